/*
 * context.h - the keyway provider's context (struct kwp_prov): one per
 * loaded instance of the provider, with its settings, its errors, and the
 * per-process I/O thread that survives fork() as a new one in the child.
 *
 * The provider makes keys held by keyservers usable by any OpenSSL 3
 * application. A key is opaque (keyref.h): it carries its public key (so
 * loading and matching are local) and its SKI; signing and decryption are
 * keyless requests run by async.c: through the provider's I/O thread
 * (io.h), or the keyless backend the application's thread bound (external
 * polling). A wrapped local key (keyway/provider_api.h) carries a local
 * private key instead, computed by the thread's local backend.
 *
 * Internal functions return 0 or a negative -errno/-KW_E* code; OpenSSL's
 * 1/0 appears only in the dispatch functions.
 */
#ifndef KEYWAY_PROVIDER_CONTEXT_H
#define KEYWAY_PROVIDER_CONTEXT_H

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/ssl.h>

#include "cap.h"
#include "settings.h"

struct kwp_io;

/* Reason codes of the provider's errors (what an operator reads). */
enum kwp_reason {
	KWP_R_CONFIG = 1,       /* the provider's settings are wrong */
	KWP_R_NOT_CONFIGURED,   /* no keyserver configured */
	KWP_R_BAD_URI,          /* a keyway: URI is malformed */
	KWP_R_BAD_KEY_REF,      /* a KEYWAY KEY block is malformed */
	KWP_R_SKI_MISMATCH,     /* the SKI does not match the public key */
	KWP_R_UNSUPPORTED_KEY,  /* key type or curve not served by keyless */
	KWP_R_UNSUPPORTED,      /* an algorithm setting keyless cannot do */
	KWP_R_UNREACHABLE,      /* no keyserver could be reached */
	KWP_R_TLS,              /* TLS with the keyserver failed */
	KWP_R_TIMEOUT,          /* no answer within timeout_ms */
	KWP_R_KEY_NOT_FOUND,    /* the keyserver does not hold the key */
	KWP_R_REMOTE_ERROR,     /* the keyserver answered another error */
	KWP_R_BAD_RESPONSE,     /* the answer has the wrong shape */
	KWP_R_BUFFER_TOO_SMALL, /* the caller's output buffer is too small */
	KWP_R_INTERNAL,         /* out of memory, thread creation... */
	KWP_R_LOCAL,            /* a wrapped local key's operation failed */
};

/* The provider context: one per loaded instance of the provider. */
struct kwp_prov {
	const OSSL_CORE_HANDLE *handle;
	OSSL_LIB_CTX *libctx; /* child of the application's, without this provider */
	char *name;           /* the name the application loaded us under */

	OSSL_FUNC_core_new_error_fn *c_new_error;
	OSSL_FUNC_core_set_error_debug_fn *c_set_error_debug;
	OSSL_FUNC_core_vset_error_fn *c_vset_error;
	OSSL_FUNC_BIO_read_ex_fn *c_bio_read_ex;
	OSSL_LIB_CTX *parent; /* the application's library context (NULL: the default) */
	bool have_parent;     /* parent was given by the core */
	bool order_checked;   /* see keep_default_first() in provider.c */

	struct kwp_settings settings; /* read once, at init */

	pthread_mutex_t lock; /* guards io, ext_ssl_ctx */
	struct kwp_io *io;    /* the I/O thread: started on first use, per process */
	struct kwp_cap cap;   /* its in-flight slots (max_inflight) and their waiters */
	SSL_CTX *ext_ssl_ctx; /* for keyless backends the application makes (provider_api.h) */
	struct kwp_prov *next_prov; /* registry for the fork handler */
};

/* kwp_raise puts an error with reason and a formatted detail on the caller's error queue. */
void kwp_raise_at(const struct kwp_prov *prov, const char *file, int line, const char *func,
                  int reason, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define kwp_raise(prov, reason, ...)                                                               \
	kwp_raise_at((prov), __FILE__, __LINE__, __func__, (reason), __VA_ARGS__)

/* kwp_check_config is 0, or -KW_ECONFIG with KWP_R_CONFIG raised when the settings had an error. */
int kwp_check_config(const struct kwp_prov *prov);

/* kwp_prov_io returns this process's I/O thread, made on first use; NULL + error raised. */
struct kwp_io *kwp_prov_io(struct kwp_prov *prov);

/*
 * kwp_prov_new makes the context of a provider instance loaded through
 * handle with the core functions in: reads its settings (a bad one is kept
 * in settings.error and logged, not fatal) and registers it for fork().
 * 0, or -ENOMEM/-EINVAL (the core lacks a function we need).
 */
int kwp_prov_new(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, struct kwp_prov **out);

/* kwp_prov_free stops its I/O thread, writes the counters (stats_file) and frees prov. NULL ok. */
void kwp_prov_free(struct kwp_prov *prov);

/* kwp_prov_is_live tells whether prov is a provider instance of this process. */
bool kwp_prov_is_live(const struct kwp_prov *prov);

/* kwp_is_module: this copy is keyway.so loaded from disk (set by its OSSL_provider_init). */
extern bool kwp_is_module;

#endif
