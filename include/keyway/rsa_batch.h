/*
 * keyway/rsa_batch.h - multi-buffer RSA private-key operations: up to
 * KW_RSA_BATCH_MAX independent raw RSA private operations (c^d mod n, keys may
 * differ per lane) computed together in the 52-bit lanes of AVX-512 IFMA.
 *
 * Only the exponentiation is batched: padding (PKCS#1 v1.5, PSS) stays
 * OpenSSL's, done by kw_rsa_batch_pad. Each lane is base-blinded, computed
 * with CRT in constant time, and checked with the public exponent before it
 * is returned; a lane that fails the check is recomputed by OpenSSL and
 * counted, so a wrong result never leaves. Where the CPU has no IFMA (or
 * KEYWAY_RSA_BATCH_IFMA=off is set in the environment), or for a modulus size
 * the kernel does not handle, every lane is computed by OpenSSL: results are
 * identical either way.
 *
 * Thread safety: a kw_rsa_batch_key is immutable once made and may be used by
 * any number of threads at once; kw_rsa_batch_run is reentrant.
 */
#ifndef KEYWAY_RSA_BATCH_H
#define KEYWAY_RSA_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define KW_RSA_BATCH_MAX 8

/* An RSA private key in the kernel's form (radix 2^52 CRT parts), wiped on free. */
struct kw_rsa_batch_key;

/*
 * kw_rsa_batch_key_new prepares pkey (an RSA private key with CRT parameters)
 * for batching. 0 with *out owned by the caller; -ENOTSUP for a key the
 * kernel does not handle (not RSA, no CRT parameters, a size other than
 * those kw_rsa_batch_supported_bits accepts): use OpenSSL for it;
 * -ENOMEM. pkey gains a reference held until kw_rsa_batch_key_free.
 */
int kw_rsa_batch_key_new(struct kw_rsa_batch_key **out, EVP_PKEY *pkey);
/* kw_rsa_batch_key_free wipes and frees k. NULL ok. */
void kw_rsa_batch_key_free(struct kw_rsa_batch_key *k);
/* kw_rsa_batch_key_bytes is the modulus size in bytes. */
size_t kw_rsa_batch_key_bytes(const struct kw_rsa_batch_key *k);

/* kw_rsa_batch_supported_bits: a modulus size the IFMA kernel computes (2048, ...). */
bool kw_rsa_batch_supported_bits(unsigned bits);

/*
 * kw_rsa_batch_available is whether the IFMA kernel runs on this CPU (decided
 * once: CPUID, and KEYWAY_RSA_BATCH_IFMA=off forces the OpenSSL path).
 */
bool kw_rsa_batch_available(void);

/* One lane of a batch. */
struct kw_rsa_batch_item {
	const struct kw_rsa_batch_key *key;
	const uint8_t *in; /* kw_rsa_batch_key_bytes(key) bytes, big-endian, < n */
	uint8_t *out;      /* kw_rsa_batch_key_bytes(key) bytes: in^d mod n, big-endian */
	int rc;            /* out: 0, or -KW_ECRYPTO (input >= n, OpenSSL failure) */
};

/*
 * The kernel always computes eight lanes, so its cost is per call (about
 * 4-5 OpenSSL signatures for RSA-2048 on the machines measured, see
 * bench/README.md): fewer lanes of one size than this go to OpenSSL.
 */
#define KW_RSA_BATCH_MIN_KERNEL 6

/*
 * kw_rsa_batch_run computes every item (n <= KW_RSA_BATCH_MAX) and sets each
 * rc. A lane's failure costs that lane only. Lanes of one modulus size are
 * computed by one kernel call if there are at least KW_RSA_BATCH_MIN_KERNEL
 * of them, by OpenSSL otherwise: a caller gains nothing by padding a partial
 * batch, and may hand over whatever it has.
 */
void kw_rsa_batch_run(struct kw_rsa_batch_item *items, size_t n);

/*
 * kw_rsa_batch_pad builds the block a keyless RSA sign opcode exponentiates
 * (PKCS#1 v1.5 DigestInfo and type-1 padding, or PSS with MGF1 and a salt as
 * long as the hash, as keyway/opcodes.h describes) into block
 * (kw_rsa_batch_key_bytes(k) bytes). 0, or -KW_ECRYPTO for an opcode that is
 * not an RSA signature or a digest of the wrong length.
 */
int kw_rsa_batch_pad(const struct kw_rsa_batch_key *k, uint8_t opcode, const uint8_t *digest,
                     size_t dlen, uint8_t *block);

/* Process-wide counters (relaxed atomics). */
struct kw_rsa_batch_stats {
	uint64_t batches;       /* kernel calls (one per modulus size in a kw_rsa_batch_run) */
	uint64_t lanes;         /* lanes computed by the kernel */
	uint64_t openssl_lanes; /* lanes computed by OpenSSL (no kernel, unsupported size) */
	uint64_t verify_failed; /* kernel results that failed the public check (recomputed) */
};
void kw_rsa_batch_stats(struct kw_rsa_batch_stats *out);

#endif
