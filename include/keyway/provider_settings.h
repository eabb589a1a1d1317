/*
 * keyway/provider_settings.h - the keyway provider's settings read the way
 * the provider reads them, for tools that check them from outside an
 * OpenSSL application (keyway ping).
 *
 * The settings come from the provider's section of an OpenSSL configuration
 * file, each overridden by its KEYWAY_* variable (docs/provider.md). Files
 * they name (TLS certificate, key, CA, fallback keys) are read when the
 * settings are. Implemented by the provider (provider_core).
 */
#ifndef KEYWAY_PROVIDER_SETTINGS_API_H
#define KEYWAY_PROVIDER_SETTINGS_API_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "keyway/backend_keyless.h"

struct kw_provider_settings;

/*
 * kw_provider_settings_read makes *out, the settings of the provider loaded
 * under the name provname from the OpenSSL configuration file cnf_path
 * (NULL: $OPENSSL_CONF, else OpenSSL's default file) and the environment.
 * A missing file or section just means no openssl.cnf values. A bad value
 * does not fail the read: see kw_provider_settings_error. 0, or -ENOMEM.
 */
int kw_provider_settings_read(const char *cnf_path, const char *provname,
                              struct kw_provider_settings **out);

/* kw_provider_settings_free frees s. NULL ok. */
void kw_provider_settings_free(struct kw_provider_settings *s);

/*
 * kw_provider_settings_error is the first problem of s's settings
 * ("timeout_ms: ..."), which makes the provider fail every operation, or
 * NULL. Owned by s.
 */
const char *kw_provider_settings_error(const struct kw_provider_settings *s);

/*
 * kw_provider_settings_cnf_problem says why the OpenSSL configuration file
 * gave no settings section for the provider (cannot open it, a syntax error,
 * no providers list, the section not linked from it), or NULL. *fatal is set
 * when the file was named explicitly (flag or OPENSSL_CONF) and cannot be read.
 */
const char *kw_provider_settings_cnf_problem(const struct kw_provider_settings *s, bool *fatal);

/*
 * kw_provider_settings_keyless fills *cfg to reach every keyserver of s as
 * the provider does, with one connection each and no fallback keys, and
 * makes *ctx, the TLS client context for TCP keyservers (NULL when all are
 * unix: ones; the caller frees it after the backend). cfg points into s.
 * 0, or -KW_ECONFIG with the reason in err when the TLS files are unusable;
 * cfg's keyservers (addrs, names, nservers) and timeout_ms are filled even
 * then.
 */
int kw_provider_settings_keyless(const struct kw_provider_settings *s,
                                 struct kw_keyless_config *cfg, SSL_CTX **ctx, char *err,
                                 size_t errlen);

#endif
