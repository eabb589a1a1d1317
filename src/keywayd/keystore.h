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

struct kwd_key {
	EVP_PKEY *pkey;            /* private key; for a device key, its public half */
	struct kwd_device *device; /* non-NULL: computed by this device (executor.h), not inline */
	enum kw_key_type type;
	unsigned bits; /* modulus or field size */
	uint8_t ski[KW_SKI_LEN];
	bool has_digest; /* RSA only */
	uint8_t digest[KW_DIGEST_LEN];
	char *path;     /* file it came from, for logs */
	char *label;    /* token label (label: ACL rules); NULL for key files */
	unsigned index; /* dense index 0..count-1, for per-thread caches */
};

struct kwd_keystore;

struct kwd_keystore_options {
	bool allow_group_readable; /* accept keys readable by group/others */
};

/*
 * kwd_keystore_load loads every regular file matching *.key under dir,
 * recursively: PEM (PKCS#8 or traditional) or DER; RSA 2048-4096, ECDSA
 * P-256/384/521, Ed25519. Refused, with the file and the fix in err:
 * encrypted keys, unsupported types or sizes, unreadable files, files
 * readable by group or others (unless allowed), duplicate SKIs, no key at
 * all. Returns 0 with *out owned by the caller, or -KW_ECONFIG/-errno.
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
