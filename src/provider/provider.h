/*
 * provider.h - internals of the keyway OpenSSL provider (keyway.so).
 *
 * The provider makes keys held by keyservers usable by any OpenSSL 3
 * application. A key is opaque: it carries its public key (so loading and
 * matching are local) and its SKI; signing and decryption are keyless
 * requests run by async.c: through the provider's I/O thread (remote.c),
 * or the keyless backend the application's thread bound (external
 * polling). A wrapped local key (provider_api.h) carries a local private
 * key instead, computed by the thread's local backend.
 *
 * Internal functions return 0 or a negative -errno/-KW_E* code; OpenSSL's
 * 1/0 appears only in the dispatch functions.
 */
#ifndef KEYWAY_PROVIDER_H
#define KEYWAY_PROVIDER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/core_dispatch.h>
#include <openssl/evp.h>

#include "async.h"
#include "keyway/protocol.h"
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
	bool order_checked;   /* see query_operation() */

	struct kwp_settings settings; /* read once, at init */

	pthread_mutex_t lock;       /* guards io, ext_ssl_ctx */
	struct kwp_io *io;          /* the I/O thread: started on first use, per process */
	struct kwp_cap cap;         /* its in-flight slots (max_inflight) and their waiters */
	SSL_CTX *ext_ssl_ctx;       /* for keyless backends the application makes (provider_api.h) */
	struct kwp_prov *next_prov; /* registry for the fork handler */
};

/* kwp_raise puts an error with reason and a formatted detail on the caller's error queue. */
void kwp_raise_at(const struct kwp_prov *prov, const char *file, int line, const char *func,
                  int reason, const char *fmt, ...) __attribute__((format(printf, 6, 7)));
#define kwp_raise(prov, reason, ...)                                                               \
	kwp_raise_at((prov), __FILE__, __LINE__, __func__, (reason), __VA_ARGS__)

/* kwp_check_config raises KWP_R_CONFIG and returns 0 if the settings had an error, else 1. */
int kwp_check_config(const struct kwp_prov *prov);

/* kwp_prov_io returns this process's I/O thread, made on first use; NULL + error raised. */
struct kwp_io *kwp_prov_io(struct kwp_prov *prov);

/* kwp_is_module: this copy is keyway.so loaded from disk (set by its OSSL_provider_init). */
extern bool kwp_is_module;

/* kwp_prov_init is the provider's entry point (OSSL_provider_init of keyway.so). */
int kwp_prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                  const OSSL_DISPATCH **out, void **provctx);

/* ---- keys (keyref.c) ---- */

enum kwp_key_type { KWP_KEY_RSA = 1, KWP_KEY_EC, KWP_KEY_ED25519 };

/* An opaque key: the keymgmt's keydata. Immutable once built. */
struct kwp_key {
	atomic_int refs; /* keydata is shared by DUP */
	struct kwp_prov *prov;
	enum kwp_key_type type;
	uint8_t ski[KW_SKI_LEN];
	char *uri;           /* as named: keyway:ski=...;cert=... */
	unsigned char *spki; /* SubjectPublicKeyInfo DER */
	size_t spki_len;
	unsigned char *pub; /* EC point or Ed25519 key: the BIT STRING contents */
	size_t pub_len;
	BIGNUM *n, *e;     /* RSA */
	EVP_PKEY *local;   /* a wrapped local key: the private key itself (else NULL) */
	const char *group; /* EC: "prime256v1", "secp384r1", "secp521r1" */
	int bits, security_bits, max_size;
};

/* Key names (keyref.c) */
#define KWP_URI_SCHEME "keyway"
#define KWP_PEM_LABEL "KEYWAY KEY"

/*
 * kwp_uri_parse parses "keyway:ski=<40 hex>;cert=<absolute path>" (attributes
 * in any order, hex in either case, %XX escapes in the path). On error
 * returns -EINVAL with the reason in err.
 */
int kwp_uri_parse(const char *uri, uint8_t ski[KW_SKI_LEN], char **cert_path, char *err,
                  size_t errlen);

/* kwp_uri_format writes the canonical URI for ski and cert_path; the caller frees it. */
char *kwp_uri_format(const uint8_t ski[KW_SKI_LEN], const char *cert_path);

/*
 * kwp_ref_encode builds the reference DER: SEQUENCE { version INTEGER (1),
 * uri UTF8String, spki SubjectPublicKeyInfo }. 0 or -KW_ECRYPTO/-ENOMEM.
 */
int kwp_ref_encode(const char *uri, const EVP_PKEY *pub, unsigned char **der, size_t *der_len);

/*
 * kwp_ref_from_uri resolves a keyway: URI into a reference DER: loads the
 * public key from the cert attribute and checks it against the SKI. On
 * error returns a negative code with the reason in err, and *reason the
 * kwp_reason to raise.
 */
int kwp_ref_from_uri(const char *uri, unsigned char **der, size_t *der_len, int *reason, char *err,
                     size_t errlen);

/* kwp_ref_pem wraps a reference DER into a "KEYWAY KEY" PEM block (NUL-terminated, caller frees).
 */
char *kwp_ref_pem(const unsigned char *der, size_t der_len);

/*
 * kwp_key_from_ref parses a reference DER into a key (its SKI checked
 * against the public key). On error returns NULL with the reason in err
 * and *reason set.
 */
struct kwp_key *kwp_key_from_ref(struct kwp_prov *prov, const unsigned char *der, size_t len,
                                 int *reason, char *err, size_t errlen);
/* kwp_key_free drops a reference; the last one frees. NULL ok. */
void kwp_key_free(struct kwp_key *key);

/* kwp_key_type_name is the keymgmt name for OSSL_OBJECT_PARAM_DATA_TYPE ("RSA", "EC", "ED25519").
 */
const char *kwp_key_type_name(enum kwp_key_type type);

/*
 * kwp_ref_type peeks at a reference DER and returns its key type, or a
 * negative code; for decoders and the store, which must name the type.
 */
int kwp_ref_type(const unsigned char *der, size_t len);

/*
 * A reference passed from our store and decoders to our keymgmt's LOAD,
 * which gets no provider context: a magic, the provider, the reference DER.
 * kwp_ref_blob allocates it (OPENSSL_free); kwp_ref_unblob checks the
 * magic and that prov is a live provider instance, and points into blob.
 */
int kwp_ref_blob(struct kwp_prov *prov, const unsigned char *der, size_t len, unsigned char **blob,
                 size_t *blob_len);
int kwp_ref_unblob(const void *blob, size_t blob_len, struct kwp_prov **prov,
                   const unsigned char **der, size_t *der_len);

/* kwp_prov_is_live tells whether prov is a provider instance of this process. */
int kwp_prov_is_live(const struct kwp_prov *prov);

/* ---- algorithm tables (one per file) ---- */

extern const OSSL_DISPATCH kwp_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ec_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_store_functions[];
extern const OSSL_DISPATCH kwp_pem_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_rsa_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_ec_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_ed25519_decoder_functions[];
extern const OSSL_DISPATCH kwp_rsa_signature_functions[];
extern const OSSL_DISPATCH kwp_ecdsa_signature_functions[];
extern const OSSL_DISPATCH kwp_ed25519_signature_functions[];
extern const OSSL_DISPATCH kwp_rsa_asym_cipher_functions[];

/* Algorithm names, as OpenSSL's own so libssl recognises the key types. */
#define KWP_NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define KWP_NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define KWP_NAMES_ED25519 "ED25519:1.3.101.112"
#define KWP_NAMES_ECDSA "ECDSA"
/* The DER structure name between our PEM decoder and our key decoders. */
#define KWP_DER_STRUCTURE "keyway"

/*
 * kwp_key_set_local makes the empty key k (its type set, or 0 for any) wrap
 * the local private key pkey (referenced): public half, SKI and sizes as
 * any keyway key. 0, or -EINVAL with the reason in err.
 */
int kwp_key_set_local(struct kwp_key *k, EVP_PKEY *pkey, char *err, size_t errlen);

/*
 * The keymgmt import parameter that wraps a local key (provider_api.c):
 * an octet string of KWP_LOCAL_MAGIC followed by the EVP_PKEY pointer.
 */
#define KWP_PARAM_LOCAL_KEY "keyway-local-key"
#define KWP_LOCAL_MAGIC "kwlocal\x01"
#define KWP_LOCAL_MAGIC_LEN 8

#endif
