/*
 * rsa_mb.h - the 8-lane RSA-CRT exponentiation kernel behind keyway/rsa_batch.h
 * (internal to libkeyway).
 *
 * Numbers are held in radix 2^52, "vertically": limb i of all eight lanes
 * sits in one 512-bit vector, so every lane runs the same instructions with
 * its own key and no carry ever crosses lanes. The kernel is written once
 * against a small vector layer (rsa_mb_vec.h) with two implementations:
 * AVX-512 IFMA intrinsics, and a portable scalar emulation with the same
 * control flow and memory addresses that the constant-time test runs under
 * Valgrind.
 */
#ifndef KEYWAY_RSA_MB_H
#define KEYWAY_RSA_MB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/bn.h>

#define KW_MB_LANES 8
#define KW_MB_MAX_BYTES 512 /* RSA-4096 */

struct kw_mb_key;

/* kw_mb_limbs is the number of 52-bit limbs of a CRT half for an RSA size, 0 if unsupported. */
unsigned kw_mb_limbs(unsigned bits);

/* kw_mb_cpu_ok is whether the CPU (and OS) runs the AVX-512 IFMA kernel. */
bool kw_mb_cpu_ok(void);

/*
 * kw_mb_key_new converts a CRT key (p, q, dp, dq, qinv) of the given modulus
 * size into the kernel's form. 0, -ENOTSUP (primes not both of half the
 * size, or parts out of range), -ENOMEM.
 */
int kw_mb_key_new(struct kw_mb_key **out, unsigned bits, const BIGNUM *p, const BIGNUM *q,
                  const BIGNUM *dp, const BIGNUM *dq, const BIGNUM *qinv);
/*
 * kw_mb_key_set_public lets the kernel check RSA-2048 results with e = 65537
 * itself (other keys are left to the caller's check). 0 or -ENOMEM.
 */
int kw_mb_key_set_public(struct kw_mb_key *k, const BIGNUM *n, const BIGNUM *e);
/* kw_mb_key_free wipes and frees k. NULL ok. */
void kw_mb_key_free(struct kw_mb_key *k);

/*
 * kw_mb_rsa_private computes buf[i] = buf[i]^d mod n in place for n <= 8
 * lanes, all keys of one size (big-endian, the modulus size in bytes, each
 * input < n). Constant time in the keys and the data: the work depends on
 * the modulus size and nothing else. If verified is not NULL, verified[i]
 * says whether the kernel itself found buf[i]^e == input (see
 * kw_mb_key_set_public); lanes it did not check are the caller's to check.
 */
void kw_mb_rsa_private(const struct kw_mb_key *const *keys, uint8_t *const *buf, size_t n,
                       bool *verified);

#endif
