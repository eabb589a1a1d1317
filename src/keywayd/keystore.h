/*
 * keystore.h - keywayd's keys: every *.key file under a directory, indexed
 * by SKI and (RSA) by modulus digest. A keystore is immutable once loaded and
 * owned by the reference-counted generation serving it (gen.h), so a SIGHUP
 * reload builds a new one and swaps it in while requests on the old one finish.
 */
#ifndef KEYWAYD_KEYSTORE_H
#define KEYWAYD_KEYSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/keytype.h"
#include "keyway/protocol.h"

struct kwd_device;
struct kwd_p11_set;
struct kwd_p11_key;
struct kw_rsa_batch_key;

struct kwd_key {
	EVP_PKEY *pkey;            /* private key; for a device (token) key, its public half */
	struct kwd_device *device; /* non-NULL: computed by this device (executor.h), not inline */
	enum kw_key_type type;
	unsigned bits; /* modulus or field size */
	uint8_t ski[KW_SKI_LEN];
	bool has_digest; /* RSA only */
	uint8_t digest[KW_DIGEST_LEN];
	char *path;     /* file it came from (a token key: its pkcs11: name), for logs */
	unsigned index; /* dense index 0..count-1, for per-thread caches */
	char *label;    /* a token key's CKA_LABEL; NULL for file keys */
	const struct kwd_p11_key *p11; /* a token key (pkcs11.h); NULL for file keys */
	struct kw_rsa_batch_key *bk;   /* the multi-buffer kernel's form (--rsa-batch), or NULL */
};

struct kwd_keystore;

struct kwd_keystore_options {
	bool allow_group_readable; /* accept keys readable by group/others */
	struct kwd_p11_set *p11;   /* token keys to serve too (a reference is taken); NULL: none */
	struct kwd_device *p11_device; /* the device computing them (their kwd_key.device) */
	bool rsa_batch;                /* prepare RSA keys the batch kernel takes (kwd_key.bk) */
};

/*
 * kwd_keystore_load loads every regular file matching *.key under dir,
 * recursively: PEM (PKCS#8 or traditional) or DER; RSA 2048-4096, ECDSA
 * P-256/384/521, Ed25519; then the token keys of opts->p11. dir may be NULL
 * when there are token keys. Refused, with the file and the fix in err:
 * encrypted keys, unsupported types or sizes, unreadable files, files
 * readable by group or others (unless allowed), duplicate SKIs (a file key
 * and a token key included, both named), no key at all. Returns 0 with *out
 * owned by the caller, or -KW_ECONFIG/-errno.
 */
int kwd_keystore_load(const char *dir, const struct kwd_keystore_options *opts,
                      struct kwd_keystore **out, char *err, size_t errlen);

/*
 * kwd_keystore_free frees ks and its keys (wiped). A keystore has one owner,
 * the generation serving it (gen.h), whose reference count covers it. NULL ok.
 */
void kwd_keystore_free(struct kwd_keystore *ks);

/*
 * kwd_keystore_id is unique per loaded keystore for the life of the process
 * (unlike its address, which a later load may reuse): caches key on it.
 */
uint64_t kwd_keystore_id(const struct kwd_keystore *ks);

size_t kwd_keystore_count(const struct kwd_keystore *ks);
const struct kwd_key *kwd_keystore_at(const struct kwd_keystore *ks, size_t i);
/* Lookups return NULL when no key matches. */
const struct kwd_key *kwd_keystore_find_ski(const struct kwd_keystore *ks,
                                            const uint8_t ski[KW_SKI_LEN]);
const struct kwd_key *kwd_keystore_find_digest(const struct kwd_keystore *ks,
                                               const uint8_t digest[KW_DIGEST_LEN]);

#endif
