/*
 * keyref.h - naming a keyway key: the keyway: URI, the reference DER in a
 * "KEYWAY KEY" PEM block, and the opaque key (struct kwp_key) built from
 * it, which is the keymgmt's keydata.
 */
#ifndef KEYWAY_PROVIDER_KEYREF_H
#define KEYWAY_PROVIDER_KEYREF_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bn.h>
#include <openssl/evp.h>

#include "keyway/keytype.h"
#include "keyway/protocol.h"

struct kwp_prov;

/* An opaque key: the keymgmt's keydata. Immutable once built. */
struct kwp_key {
	atomic_int refs; /* keydata is shared by DUP */
	struct kwp_prov *prov;
	enum kw_key_type type;
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
 * returns -EINVAL with the reason in err. The inverse, kw_keyref_uri, and
 * the PEM block, kw_keyref_pem, are public (keyway/keyref.h).
 */
int kwp_uri_parse(const char *uri, uint8_t ski[KW_SKI_LEN], char **cert_path, char *err,
                  size_t errlen);

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
/* kwp_key_ref takes a reference on key (keydata shared by DUP, a context's key); returns key. */
struct kwp_key *kwp_key_ref(struct kwp_key *key);
/* kwp_key_unref drops a reference; the last one frees. NULL ok. */
void kwp_key_unref(struct kwp_key *key);

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

/*
 * kwp_key_set_local makes the empty key k (its type set, or 0 for any) wrap
 * the local private key pkey (referenced): public half, SKI and sizes as
 * any keyway key. 0, or -EINVAL with the reason in err.
 */
int kwp_key_set_local(struct kwp_key *k, EVP_PKEY *pkey, char *err, size_t errlen);

/*
 * The keymgmt import parameter that wraps a local key (provider_api.c): an
 * int, 1. It carries no pointer: the key is the one kwp_local_import_arm
 * armed on the calling thread, so an EVP_PKEY_fromdata caller outside
 * kw_provider_wrap_key cannot make the provider take an address of its
 * choosing for a key.
 */
#define KWP_PARAM_LOCAL_KEY "keyway-local-key"

/*
 * kwp_local_import_arm makes pkey the key the calling thread's next
 * KWP_PARAM_LOCAL_KEY import wraps (consumed by that import); NULL disarms.
 */
void kwp_local_import_arm(EVP_PKEY *pkey);

#endif
