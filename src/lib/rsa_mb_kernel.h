/*
 * rsa_mb_kernel.h - the data the 8-lane RSA kernel (rsa_mb_kernel.c) works on
 * (internal to libkeyway and its constant-time test).
 *
 * A CRT half has L limbs of 52 bits (L = 20, 30, 40 for RSA-2048, -3072,
 * -4096), enough headroom above the prime (16 bits or more) for the
 * "almost Montgomery" products to stay below 2p without final subtractions.
 */
#ifndef KEYWAY_RSA_MB_KERNEL_H
#define KEYWAY_RSA_MB_KERNEL_H

#include <stddef.h>
#include <stdint.h>

#define KW_MB_LMAX 40 /* limbs of a 2048-bit half (RSA-4096) */
/*
 * Exponent window bits. 4 rather than 5: 51 more products per half, but the
 * 16-entry table (20 KB for RSA-2048) stays in a 32 KB L1 while the 32-entry
 * one streamed from L2 at every lookup; measured about 2 % faster.
 */
#define KW_MB_WIN 4
#define KW_MB_TABLE (1 << KW_MB_WIN)

/* One prime of a CRT key in radix 2^52 (limbs little-endian), with its Montgomery constants. */
struct kw_mb_half {
	uint64_t m[KW_MB_LMAX];  /* the prime */
	uint64_t r1[KW_MB_LMAX]; /* R mod m, R = 2^(52 L): 1 in Montgomery form */
	uint64_t r2[KW_MB_LMAX]; /* R^2 mod m */
	uint64_t r3[KW_MB_LMAX]; /* R^3 mod m */
	uint64_t e[KW_MB_LMAX];  /* the CRT exponent, 64-bit words little-endian, zero-padded */
	uint64_t k0;             /* -m^-1 mod 2^52 */
};

struct kw_mb_key {
	unsigned bits;  /* modulus bits */
	unsigned limbs; /* L */
	struct kw_mb_half p, q;
	uint64_t qinv_r[KW_MB_LMAX]; /* q^-1 * R mod p: Garner's coefficient, Montgomery form */
	/*
	 * The public key for the in-kernel check of RSA-2048 results with e =
	 * 65537 (n in 40 limbs, R = 2^2080); check is 0 for other keys.
	 */
	struct {
		uint64_t n[KW_MB_LMAX], r2[KW_MB_LMAX], k0;
		unsigned check;
	} pub;
};

/* Vertical numbers: limb i of lane j at [i][j]. */
typedef uint64_t kw_mb_vnum[KW_MB_LMAX][8];

/* Scratch of one kernel call, 64-byte aligned; wiped by the caller after use. */
struct kw_mb_work {
	kw_mb_vnum table[KW_MB_TABLE];
	kw_mb_vnum m, r1, r2, r3, x, acc, t, m1, m2, qv, qinv;
	uint64_t wide[2 * KW_MB_LMAX][8]; /* c going in, c^d coming out */
	uint64_t e[KW_MB_LMAX + 1][8];    /* exponent words, one zero word of slack */
	uint64_t k0[8], idx[8];
	uint64_t verified[8]; /* out: 1 where the kernel checked s^e == c itself */
};

/*
 * The kernel: buf[i] = buf[i]^d mod n (big-endian, bits/8 bytes) for eight
 * lanes of keys of one size. Every lane must be set (repeat a key and an
 * input for unused lanes). When every lane's key has pub.check, each result
 * is also checked with the public exponent (w->verified). _ifma needs AVX-512 IFMA; _emu is the
 * portable emulation the constant-time test runs.
 */
void kw_mb_rsa_private_ifma(const struct kw_mb_key *const keys[8], uint8_t *const buf[8],
                            struct kw_mb_work *w);
void kw_mb_rsa_private_emu(const struct kw_mb_key *const keys[8], uint8_t *const buf[8],
                           struct kw_mb_work *w);

#endif
