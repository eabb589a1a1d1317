/*
 * keyway/keyfile.h - private key files: finding them in a directory, reading
 * them safely and decoding them, the one way every Keyway program does it.
 *
 * A key file is a regular file named *.key, PEM (PKCS#8, PKCS#1 RSA or SEC1
 * EC) or DER, unencrypted. It is opened with O_NONBLOCK (a FIFO named x.key
 * cannot hang the loader), checked with fstat on the open descriptor (a
 * file readable by group or others is refused unless allowed), read whole
 * into memory and wiped from there with OPENSSL_cleanse once decoded.
 * Nothing here ever prompts for a password.
 */
#ifndef KEYWAY_KEYFILE_H
#define KEYWAY_KEYFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <openssl/evp.h>

/* One key file read into memory. */
struct kw_keyfile {
	char *path;          /* DIR/NAME as messages name it (owned) */
	unsigned char *data; /* the file's bytes (owned; wiped by kw_keyfile_cleanup) */
	size_t len;          /* bytes in data */
	dev_t dev;           /* device and inode, to tell one file met twice */
	ino_t ino;
};

/* How kw_keyfile_load_dir walks and what kw_keyfile_read accepts. */
struct kw_keyfile_options {
	bool recursive;            /* walk subdirectories too (never a symlinked one) */
	bool allow_group_readable; /* accept files readable by group or others */
	const char *mode_fix;      /* appended to the "chmod 600 FILE" fix, e.g. " or pass --x" */
};

/*
 * kw_keyfile_fn receives one file read by kw_keyfile_load_dir and takes
 * ownership of its contents (kw_keyfile_cleanup them). Returns 0 to go on,
 * or a negative code with a sentence in err, which stops the walk.
 */
typedef int (*kw_keyfile_fn)(void *arg, struct kw_keyfile *file, char *err, size_t errlen);

/* kw_keyfile_name_ok tells whether a directory entry's name is a key file's (*.key). */
bool kw_keyfile_name_ok(const char *name);

/*
 * kw_keyfile_load_dir reads every key file of dir (and of its subdirectories
 * when opts->recursive), in name order, and hands each one to fn. Symlinks to
 * files are followed; symlinked directories are not, so a loop cannot recurse
 * (dir itself may be a symlink: the operator named it). Entries that are not
 * regular files are skipped. Returns the number of files handed to fn, or
 * -KW_ECONFIG/-errno with a sentence naming the file and the fix in err
 * (what fn returned, when fn failed).
 */
int kw_keyfile_load_dir(const char *dir, const struct kw_keyfile_options *opts, kw_keyfile_fn fn,
                        void *arg, char *err, size_t errlen);

/*
 * kw_keyfile_read opens name relative to dirfd (AT_FDCWD for a plain path)
 * and reads it into out, which it fills (path = a copy of path). Returns 0,
 * 1 when name is not a regular file (out untouched), or -KW_ECONFIG/-errno
 * with a sentence in err: readable by group or others (unless allowed), too
 * large, changed while read, unreadable.
 */
int kw_keyfile_read(int dirfd, const char *name, const char *path,
                    const struct kw_keyfile_options *opts, struct kw_keyfile *out, char *err,
                    size_t errlen);

/*
 * kw_keyfile_parse decodes the private key in file with libctx (NULL: the
 * default). 0 with *out owned by the caller, -KW_ECONFIG with the file and
 * the fix in err (an encrypted key, not a private key), or -ENOMEM.
 */
int kw_keyfile_parse(const struct kw_keyfile *file, OSSL_LIB_CTX *libctx, EVP_PKEY **out, char *err,
                     size_t errlen);

/* kw_keyfile_cleanup wipes and frees the contents of file and zeroes it; NULL ok. */
void kw_keyfile_cleanup(struct kw_keyfile *file);

/*
 * kw_pem_no_password is the pem_password_cb of every PEM read in Keyway: it
 * never prompts and refuses to decrypt. When u is not NULL it is an int set
 * to 1, so the caller can tell "encrypted" from "malformed".
 */
int kw_pem_no_password(char *buf, int size, int rwflag, void *u);

#endif
