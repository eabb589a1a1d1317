/*
 * settings.h - the keyway provider's settings, shared by the provider and
 * by `keyway ping`, so both read them the same way.
 *
 * Each setting comes from the provider's openssl.cnf section and may be
 * overridden by an environment variable (servers / KEYWAY_SERVERS, ...),
 * itself overridden by a program that links the provider in
 * (kw_provider_configure, keyway/provider_api.h).
 * Files (client certificate, key, CA, fallback keys) are read into memory when the
 * settings are loaded -- in the privileged parent, before a chroot or a
 * fork -- and turned into a TLS context later, where it is used.
 */
#ifndef KEYWAY_PROVIDER_SETTINGS_H
#define KEYWAY_PROVIDER_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include <openssl/ssl.h>

#include "keyway/backend_keyless.h"
#include "keyway/keyset.h"
#include "keyway/net.h"

#define KWP_DEFAULT_TIMEOUT_MS 2000u
#define KWP_DEFAULT_ATTEMPT_TIMEOUT_MS 300u
#define KWP_DEFAULT_CONNECTIONS 2u
#define KWP_MAX_SERVERS 32
#define KWP_DEFAULT_MAX_INFLIGHT 1024u

/* Who reads keyserver answers: the provider's I/O thread, or the application's own loop. */
enum kwp_polling { KWP_POLLING_INTERNAL = 0, KWP_POLLING_EXTERNAL };

/* A whole file read into memory (wiped on cleanup). */
struct kwp_blob {
	unsigned char *data;
	size_t len;
};

struct kwp_settings {
	struct kw_addr *addrs; /* resolved keyserver addresses */
	char **server_texts;   /* each as written, for messages */
	size_t nservers;
	char *client_cert; /* paths, as configured (NULL: unset) */
	char *client_key;
	bool allow_group_readable_keys; /* accept a client_key readable by group or others */
	char *ca;
	char *server_name; /* overrides the name checked and sent as SNI */
	unsigned timeout_ms;
	unsigned attempt_timeout_ms; /* one try on one keyserver before another is asked too */
	unsigned connections;        /* per keyserver, per I/O thread */
	unsigned max_inflight; /* ops in flight per process (internal polling) before jobs wait */
	enum kwp_polling polling;
	/* Local-key RSA ops may run in multi-buffer batches on a bound threads backend. */
	bool rsa_batch;
	char *stats_file; /* counters written here at teardown ("%p": the pid), or NULL */
	struct kwp_blob cert_pem, key_pem, ca_pem;
	char *fallback_keys;        /* directory, as configured (NULL: unset) */
	struct kw_keyset *fallback; /* its keys, loaded with the settings; NULL: none */
	char *error;                /* the first configuration error, or NULL */
	/* Why openssl.cnf gave no provider section (kwp_settings_from_cnf only), or NULL. */
	char *cnf_problem;
	bool cnf_fatal; /* cnf_problem is a file named explicitly that cannot be read */
};

/* A setting as the configuration holds it, or NULL when unset. */
typedef const char *(*kwp_setting_fn)(void *arg, const char *name);

/*
 * kwp_settings_load fills s from get (openssl.cnf values; may be NULL), the
 * environment, and kw_provider_configure's values, each overriding the
 * one before. It never fails on a bad value: the first problem is
 * kept in s->error ("timeout_ms: ..."), for the caller to report where it
 * matters. Returns 0, or -ENOMEM.
 */
int kwp_settings_load(struct kwp_settings *s, kwp_setting_fn get, void *arg);
void kwp_settings_cleanup(struct kwp_settings *s);

/*
 * kwp_settings_ssl_ctx builds the keyserver TLS client context from the
 * in-memory CA, certificate and key (NULL libctx: the default one). NULL
 * with the reason in err on failure.
 */
SSL_CTX *kwp_settings_ssl_ctx(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, char *err,
                              size_t errlen);

/* kwp_settings_need_tls is true when some keyserver is reached over TCP. */
bool kwp_settings_need_tls(const struct kwp_settings *s);

/*
 * kwp_settings_keyless_config fills *cfg for a keyless backend from s, with
 * ctx (from kwp_settings_ssl_ctx, or NULL for unix: keyservers only) and
 * counters, after preparing the fallback keys. 0, or -KW_ECONFIG with the
 * reason in err.
 */
int kwp_settings_keyless_config(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, SSL_CTX *ctx,
                                struct kw_keyless_counters *counters, struct kw_keyless_config *cfg,
                                char *err, size_t errlen);

/*
 * kwp_settings_from_cnf loads settings as the provider would under the name
 * provname in the OpenSSL configuration file path (NULL: $OPENSSL_CONF or
 * OpenSSL's default file). A missing file or section just means no
 * openssl.cnf values. Returns 0 or -ENOMEM; problems land in s->error,
 * and why the file gave no section for provname in s->cnf_problem.
 */
/* kwp_settings_log_errors: whether a bad setting is logged at load (kw_provider_log_config_errors).
 */
bool kwp_settings_log_errors(void);

int kwp_settings_from_cnf(struct kwp_settings *s, const char *path, const char *provname);

#endif
