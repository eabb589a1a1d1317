/*
 * keyway/version.h - what every program prints for --version.
 *
 * One line: the program, Keyway's version, the source revision, the OpenSSL
 * library actually loaded and the features built in, e.g.
 *   keywayd 0.1.0 (git 0029a7d1c2e4) OpenSSL 3.0.19; features: backend-inline, provider
 * The version comes from CMake's project version. The revision is the git
 * commit the build was configured from, or, for a source export without git
 * history, "package VERSION" (KW_PACKAGE_VERSION, e.g. the Debian version).
 * Features are what the build found and compiled in (KW_FEATURES on the
 * keyway library target).
 */
#ifndef KEYWAY_VERSION_H
#define KEYWAY_VERSION_H

#include <stddef.h>
#include <stdio.h>

/* kw_version returns Keyway's version, e.g. "0.1.0" (static storage). */
const char *kw_version(void);

/* kw_version_revision returns "git SHORTHASH" or "package VERSION" (static storage). */
const char *kw_version_revision(void);

/* kw_version_features returns the features built in, comma-separated (static storage). */
const char *kw_version_features(void);

/*
 * kw_version_format writes the version line (without a newline) for program
 * into out: program's basename, or the running program's name when program
 * is NULL. Returns the length of the whole line, as snprintf; a line longer
 * than out_len - 1 is truncated (still terminated when out_len > 0).
 */
int kw_version_format(char *out, size_t out_len, const char *program);

/* kw_version_print writes the version line and a newline to f (see kw_version_format). */
void kw_version_print(FILE *f, const char *program);

#endif
