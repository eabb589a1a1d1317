/*
 * rsa_mb.c - the kernel's key form and its dispatch (see rsa_mb.h): CRT keys
 * converted to radix 2^52 with their Montgomery constants, the CPU check and
 * the call into the AVX-512 IFMA kernel (rsa_mb_kernel.c).
 */
#include "rsa_mb.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "rsa_mb_kernel.h"
#include "rsa_mb_vec.h"

unsigned kw_mb_limbs(unsigned bits)
{
	/* L limbs of 52 bits hold a half of bits/2 with 16 or more bits to spare. */
	switch (bits) {
	case 2048:
		return 20;
	case 3072:
		return 30;
	case 4096:
		return 40;
	default:
		return 0;
	}
}

bool kw_mb_cpu_ok(void)
{
#ifdef KW_MB_HAVE_IFMA
	/* __builtin_cpu_supports also checks the OS saves the AVX-512 state (XCR0). */
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512ifma");
#else
	return false;
#endif
}

/* bn_words writes b as nw 64-bit words, little-endian. b must fit. */
static int bn_words(uint64_t *w, size_t nw, const BIGNUM *b)
{
	uint8_t le[8 * KW_MB_LMAX];
	int rc = 0;

	if (nw > KW_MB_LMAX || BN_bn2lebinpad(b, le, (int)(8 * nw)) < 0)
		rc = -ENOTSUP;
	for (size_t i = 0; rc == 0 && i < nw; i++) {
		w[i] = 0;
		for (int k = 7; k >= 0; k--)
			w[i] = w[i] << 8 | le[8 * i + (size_t)k];
	}
	OPENSSL_cleanse(le, sizeof(le));
	return rc;
}

/* bn_limbs writes b (< 2^(52 L)) as L limbs of 52 bits. */
static int bn_limbs(uint64_t *out, unsigned L, const BIGNUM *b)
{
	uint64_t w[KW_MB_LMAX + 1] = {0};

	if (bn_words(w, KW_MB_LMAX, b) != 0)
		return -ENOTSUP;
	for (unsigned i = 0; i < L; i++) {
		unsigned bit = 52 * i, wd = bit / 64, sh = bit % 64;
		uint64_t v = w[wd] >> sh;
		if (sh > 12)
			v |= w[wd + 1] << (64 - sh);
		out[i] = v & MB_MASK52;
	}
	OPENSSL_cleanse(w, sizeof(w));
	return 0;
}

/* neg_inv52 is -m0^-1 mod 2^52 (m0 odd), by Newton's iteration: each step doubles the bits. */
static uint64_t neg_inv52(uint64_t m0)
{
	uint64_t x = m0; /* m0 * m0 = 1 mod 8: three bits */
	for (int i = 0; i < 5; i++)
		x *= 2 - m0 * x;
	return (0 - x) & MB_MASK52;
}

/*
 * half_new fills h for the prime m and exponent e. The modular reductions
 * use the prime with BN_FLG_CONSTTIME, as OpenSSL does for its own
 * Montgomery setup of p and q.
 */
static int half_new(struct kw_mb_half *h, unsigned L, const BIGNUM *m_in, const BIGNUM *e,
                    BN_CTX *ctx)
{
	BIGNUM *m = BN_dup(m_in), *r = BN_CTX_get(ctx), *r2 = BN_CTX_get(ctx),
	       *r3 = BN_CTX_get(ctx);
	int rc = -ENOMEM;

	if (m == NULL || r3 == NULL)
		goto out;
	BN_set_flags(m, BN_FLG_CONSTTIME);
	if (!BN_set_bit(r, (int)(52 * L)) || !BN_mod(r, r, m, ctx) ||
	    !BN_mod_mul(r2, r, r, m, ctx) || !BN_mod_mul(r3, r2, r, m, ctx))
		goto out;
	rc = -ENOTSUP;
	if (bn_limbs(h->m, L, m) != 0 || bn_limbs(h->r1, L, r) != 0 ||
	    bn_limbs(h->r2, L, r2) != 0 || bn_limbs(h->r3, L, r3) != 0 ||
	    bn_words(h->e, KW_MB_LMAX, e) != 0)
		goto out;
	h->k0 = neg_inv52(h->m[0] | (uint64_t)h->m[1] << 52);
	rc = 0;
out:
	BN_clear(r);
	BN_clear(r2);
	BN_clear(r3);
	BN_clear_free(m);
	return rc;
}

int kw_mb_key_new(struct kw_mb_key **out, unsigned bits, const BIGNUM *p, const BIGNUM *q,
                  const BIGNUM *dp, const BIGNUM *dq, const BIGNUM *qinv)
{
	const unsigned L = kw_mb_limbs(bits);
	const int hb = (int)bits / 2;
	struct kw_mb_key *k;
	BN_CTX *ctx;
	BIGNUM *t, *pc;
	int rc = -ENOMEM;

	*out = NULL;
	/* Both primes exactly half the size (as OpenSSL makes them); anything else to OpenSSL. */
	if (L == 0 || BN_num_bits(p) != hb || BN_num_bits(q) != hb || !BN_is_odd(p) ||
	    !BN_is_odd(q) || BN_num_bits(dp) > hb || BN_num_bits(dq) > hb || BN_cmp(qinv, p) >= 0)
		return -ENOTSUP;
	if ((k = aligned_alloc(64, (sizeof(*k) + 63) / 64 * 64)) == NULL)
		return -ENOMEM;
	memset(k, 0, sizeof(*k));
	k->bits = bits;
	k->limbs = L;
	if ((ctx = BN_CTX_secure_new()) == NULL)
		goto out;
	BN_CTX_start(ctx);
	t = BN_CTX_get(ctx);
	pc = BN_dup(p);
	if (t == NULL || pc == NULL)
		goto out_ctx;
	BN_set_flags(pc, BN_FLG_CONSTTIME);
	if ((rc = half_new(&k->p, L, p, dp, ctx)) != 0 ||
	    (rc = half_new(&k->q, L, q, dq, ctx)) != 0)
		goto out_ctx;
	/* qinv R mod p: Garner's coefficient, ready for a Montgomery product. */
	rc = -ENOMEM;
	if (!BN_set_bit(t, (int)(52 * L)) || !BN_mod(t, t, pc, ctx) ||
	    !BN_mod_mul(t, t, qinv, pc, ctx))
		goto out_ctx;
	rc = bn_limbs(k->qinv_r, L, t);
out_ctx:
	BN_clear(t);
	BN_clear_free(pc);
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
out:
	if (rc != 0) {
		kw_mb_key_free(k);
		return rc;
	}
	*out = k;
	return 0;
}

int kw_mb_key_set_public(struct kw_mb_key *k, const BIGNUM *n, const BIGNUM *e)
{
	enum { LN = 40 };
	BN_CTX *ctx;
	BIGNUM *r;
	int rc = -ENOMEM;

	k->pub.check = 0;
	if (k->bits != 2048 || !BN_is_word(e, 65537))
		return 0;
	if ((ctx = BN_CTX_new()) == NULL)
		return -ENOMEM;
	BN_CTX_start(ctx);
	/* R^2 mod n with R = 2^(52 * 40); n is public, no constant-time care needed. */
	if ((r = BN_CTX_get(ctx)) != NULL && BN_set_bit(r, 2 * 52 * LN) && BN_mod(r, r, n, ctx) &&
	    bn_limbs(k->pub.n, LN, n) == 0 && bn_limbs(k->pub.r2, LN, r) == 0) {
		k->pub.k0 = neg_inv52(k->pub.n[0] | k->pub.n[1] << 52);
		k->pub.check = 1;
		rc = 0;
	}
	BN_CTX_end(ctx);
	BN_CTX_free(ctx);
	return rc;
}

void kw_mb_key_free(struct kw_mb_key *k)
{
	if (k == NULL)
		return;
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

void kw_mb_rsa_private(const struct kw_mb_key *const *keys, uint8_t *const *buf, size_t n,
                       bool *verified)
{
#ifdef KW_MB_HAVE_IFMA
	const struct kw_mb_key *k8[8];
	uint8_t *b8[8];
	/* Unused lanes repeat lane 0's key on a zero input of their own: the same work, discarded.
	 */
	static _Thread_local uint8_t spare[8][KW_MB_MAX_BYTES];
	struct kw_mb_work *w = aligned_alloc(64, sizeof(*w));

	if (w == NULL || n == 0) {
		free(w);
		return; /* the results fail the public check and go to OpenSSL */
	}
	for (size_t i = 0; i < 8; i++) {
		k8[i] = keys[i < n ? i : 0];
		b8[i] = i < n ? buf[i] : spare[i];
		if (i >= n)
			memset(spare[i], 0, sizeof(spare[i]));
	}
	kw_mb_rsa_private_ifma(k8, b8, w);
	for (size_t i = 0; verified != NULL && i < n; i++)
		verified[i] = w->verified[i] != 0;
	OPENSSL_cleanse(w, sizeof(*w));
	free(w);
#else
	(void)keys;
	(void)buf;
	for (size_t i = 0; verified != NULL && i < n; i++)
		verified[i] = false;
#endif
}
