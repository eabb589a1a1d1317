/*
 * rsa_batch.c - multi-buffer RSA private-key operations (see keyway/rsa_batch.h).
 *
 * This file holds everything around the exponentiation: key preparation,
 * padding (OpenSSL's), base blinding, the public-exponent check of every
 * kernel result, the OpenSSL fallback and the counters. The 8-lane
 * exponentiation itself is rsa_mb.c (radix 2^52, AVX-512 IFMA or its portable
 * emulation), which sees only the blinded input and the key's CRT parts.
 */

/*
 * RSA_padding_add_PKCS1_type_1 and RSA_padding_add_PKCS1_PSS_mgf1 are
 * deprecated in OpenSSL 3.0 but have no replacement: the EVP interface pads
 * only as part of a private-key operation, and here the padded block is what
 * the kernel exponentiates. EVP_PKEY_get0_RSA gives them the key they take
 * (only its modulus size is read).
 */
#define OPENSSL_SUPPRESS_DEPRECATED

#include "keyway/rsa_batch.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "keyway/err.h"
#include "keyway/opcodes.h"
#include "rsa_mb.h"

struct kw_rsa_batch_key {
	EVP_PKEY *pkey;
	size_t bytes;
	unsigned bits;
	/* Public parts for blinding and the result check. */
	BIGNUM *n, *e;
	BN_MONT_CTX *mont_n;
	/*
	 * The blinding pair A = r^e, Ai = r^-1 (Montgomery form), shared by
	 * every thread using the key under its own lock, as OpenSSL's shared
	 * blinding is (the key is otherwise immutable). Squared after each use,
	 * drawn anew every BLIND_RENEW uses, as BN_BLINDING does.
	 */
	pthread_mutex_t blind_lock;
	BIGNUM *blind_a, *blind_ai;
	unsigned blind_uses;
	bool blind_lock_init;
	/* The kernel's form of the CRT key; NULL when the kernel cannot take it. */
	struct kw_mb_key *mb;
};

static _Atomic uint64_t st_batches, st_lanes, st_openssl_lanes, st_verify_failed;

/* ---- CPU detection --------------------------------------------------------------------- */

static bool available;
static pthread_once_t available_once = PTHREAD_ONCE_INIT;

static void detect(void)
{
	const char *env = getenv("KEYWAY_RSA_BATCH_IFMA");
	bool off = env != NULL && (strcmp(env, "off") == 0 || strcmp(env, "0") == 0);

	available = !off && kw_mb_cpu_ok();
}

bool kw_rsa_batch_available(void)
{
	pthread_once(&available_once, detect);
	return available;
}

bool kw_rsa_batch_supported_bits(unsigned bits)
{
	return kw_mb_limbs(bits) != 0;
}

/* ---- keys ------------------------------------------------------------------------------ */

static BIGNUM *get_bn(EVP_PKEY *pkey, const char *name)
{
	BIGNUM *bn = NULL;
	if (EVP_PKEY_get_bn_param(pkey, name, &bn) != 1)
		return NULL;
	return bn;
}

/* prepare_public caches n, e, a Montgomery context for n and the blinding. */
static int prepare_public(struct kw_rsa_batch_key *k)
{
	BN_CTX *ctx = BN_CTX_new();
	int rc = -ENOMEM;

	k->n = get_bn(k->pkey, OSSL_PKEY_PARAM_RSA_N);
	k->e = get_bn(k->pkey, OSSL_PKEY_PARAM_RSA_E);
	if (ctx == NULL || k->n == NULL || k->e == NULL)
		goto out;
	k->mont_n = BN_MONT_CTX_new();
	if (k->mont_n == NULL || BN_MONT_CTX_set(k->mont_n, k->n, ctx) != 1)
		goto out;
	k->blind_a = BN_new();
	k->blind_ai = BN_new();
	if (k->blind_a == NULL || k->blind_ai == NULL ||
	    pthread_mutex_init(&k->blind_lock, NULL) != 0)
		goto out;
	k->blind_lock_init = true;
	rc = 0;
out:
	BN_CTX_free(ctx);
	return rc;
}

/*
 * prepare_kernel converts the CRT parts for the kernel. A key it cannot take
 * (multi-prime, unbalanced primes, a size it lacks) keeps mb NULL: its lanes
 * then go to OpenSSL, which is still correct.
 */
static int prepare_kernel(struct kw_rsa_batch_key *k)
{
	static const char *const names[5] = {
	    OSSL_PKEY_PARAM_RSA_FACTOR1,      OSSL_PKEY_PARAM_RSA_FACTOR2,
	    OSSL_PKEY_PARAM_RSA_EXPONENT1,    OSSL_PKEY_PARAM_RSA_EXPONENT2,
	    OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[5] = {NULL}, *third = NULL;
	int rc = 0;

	if (kw_mb_limbs(k->bits) == 0)
		return 0;
	for (int i = 0; i < 5; i++)
		if ((bn[i] = get_bn(k->pkey, names[i])) == NULL)
			goto out; /* no CRT parameters: OpenSSL only */
	if ((third = get_bn(k->pkey, OSSL_PKEY_PARAM_RSA_FACTOR3)) != NULL)
		goto out; /* multi-prime */
	rc = kw_mb_key_new(&k->mb, k->bits, bn[0], bn[1], bn[2], bn[3], bn[4]);
	if (rc == 0)
		rc = kw_mb_key_set_public(k->mb, k->n, k->e);
	else if (rc == -ENOTSUP)
		rc = 0;
out:
	for (int i = 0; i < 5; i++)
		BN_clear_free(bn[i]);
	BN_clear_free(third);
	return rc;
}

int kw_rsa_batch_key_new(struct kw_rsa_batch_key **out, EVP_PKEY *pkey)
{
	struct kw_rsa_batch_key *k;
	int bits, rc;

	*out = NULL;
	if (pkey == NULL || EVP_PKEY_get_base_id(pkey) != EVP_PKEY_RSA)
		return -ENOTSUP;
	bits = EVP_PKEY_get_bits(pkey);
	if (bits <= 0 || !kw_rsa_batch_supported_bits((unsigned)bits))
		return -ENOTSUP;
	if ((k = calloc(1, sizeof(*k))) == NULL)
		return -ENOMEM;
	if (EVP_PKEY_up_ref(pkey) != 1) {
		free(k);
		return -ENOMEM;
	}
	k->pkey = pkey;
	k->bits = (unsigned)bits;
	k->bytes = (size_t)EVP_PKEY_get_size(pkey);
	if ((rc = prepare_public(k)) != 0 || (rc = prepare_kernel(k)) != 0) {
		kw_rsa_batch_key_free(k);
		return rc;
	}
	if (k->mb == NULL) {
		/* The contract: a key the kernel does not handle is the caller's to give OpenSSL.
		 */
		kw_rsa_batch_key_free(k);
		return -ENOTSUP;
	}
	*out = k;
	return 0;
}

void kw_rsa_batch_key_free(struct kw_rsa_batch_key *k)
{
	if (k == NULL)
		return;
	kw_mb_key_free(k->mb);
	if (k->blind_lock_init)
		pthread_mutex_destroy(&k->blind_lock);
	BN_clear_free(k->blind_a);
	BN_clear_free(k->blind_ai);
	BN_MONT_CTX_free(k->mont_n);
	BN_free(k->n);
	BN_free(k->e);
	EVP_PKEY_free(k->pkey);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

size_t kw_rsa_batch_key_bytes(const struct kw_rsa_batch_key *k)
{
	return k->bytes;
}

/* ---- the OpenSSL path ------------------------------------------------------------------ */

/* openssl_lane computes one lane with OpenSSL's raw private operation. */
static int openssl_lane(const struct kw_rsa_batch_key *k, const uint8_t *in, uint8_t *out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, k->pkey, NULL);
	size_t len = k->bytes;
	int rc = -KW_ECRYPTO;

	if (ctx != NULL && EVP_PKEY_decrypt_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
	    EVP_PKEY_decrypt(ctx, out, &len, in, k->bytes) == 1 && len == k->bytes)
		rc = 0;
	EVP_PKEY_CTX_free(ctx);
	if (rc != 0) {
		ERR_clear_error();
		memset(out, 0, k->bytes);
	}
	return rc;
}

/* ---- the kernel path ------------------------------------------------------------------- */

/* Per-lane working state of a kernel batch. */
struct lane {
	struct kw_rsa_batch_item *item;
	BIGNUM *c, *unblind, *s, *v;
	uint8_t buf[KW_MB_MAX_BYTES];
};

#define BLIND_RENEW 32 /* uses of one r, as OpenSSL's BN_BLINDING_COUNTER */

/*
 * blind_renew draws r and sets A = r^e, Ai = r^-1, in Montgomery form (all
 * products are Montgomery products: no division touches r). The inverse is
 * taken of t = r s for a second random s, with OpenSSL's fast inversion: t
 * is uniform and independent of r, so its timing says nothing about r; then
 * t^-1 s = r^-1. This is what makes a renewal cost about 50 us instead of
 * BN_BLINDING's 250 (a constant-time inversion of r itself).
 */
static int blind_renew(struct kw_rsa_batch_key *k, BN_CTX *ctx)
{
	BIGNUM *r, *s, *t;
	int ok = 0;

	BN_CTX_start(ctx);
	r = BN_CTX_get(ctx);
	s = BN_CTX_get(ctx);
	t = BN_CTX_get(ctx);
	for (int tries = 0; !ok && t != NULL && tries < 8; tries++) {
		ERR_set_mark();
		ok = BN_priv_rand_range(r, k->n) && BN_priv_rand_range(s, k->n) &&
		     BN_mod_mul_montgomery(t, r, s, k->mont_n, ctx) &&           /* r s / R */
		     BN_mod_inverse(t, t, k->n, ctx) != NULL &&                  /* R / (r s) */
		     BN_mod_mul_montgomery(k->blind_ai, t, s, k->mont_n, ctx) && /* 1/r */
		     BN_mod_exp_mont(k->blind_a, r, k->e, k->n, ctx, k->mont_n) &&
		     BN_to_montgomery(k->blind_a, k->blind_a, k->mont_n, ctx) &&
		     BN_to_montgomery(k->blind_ai, k->blind_ai, k->mont_n, ctx);
		ERR_pop_to_mark(); /* a non-invertible t (a factor of n!) is drawn again */
	}
	BN_clear(r);
	BN_clear(s);
	BN_clear(t);
	BN_CTX_end(ctx);
	return ok;
}

/*
 * blind_take blinds c in place (c A) and gives the lane its unblinding
 * factor Ai, then moves the key's pair on: A^2, Ai^2 (or a new r).
 */
static int blind_take(struct kw_rsa_batch_key *k, BIGNUM *c, BIGNUM *unblind, BN_CTX *ctx)
{
	int ok;

	pthread_mutex_lock(&k->blind_lock);
	if (k->blind_uses++ % BLIND_RENEW == 0)
		ok = blind_renew(k, ctx);
	else
		ok = BN_mod_mul_montgomery(k->blind_a, k->blind_a, k->blind_a, k->mont_n, ctx) &&
		     BN_mod_mul_montgomery(k->blind_ai, k->blind_ai, k->blind_ai, k->mont_n, ctx);
	ok = ok && BN_mod_mul_montgomery(c, c, k->blind_a, k->mont_n, ctx) &&
	     BN_copy(unblind, k->blind_ai) != NULL;
	if (!ok)
		k->blind_uses = 0; /* renew at the next use */
	pthread_mutex_unlock(&k->blind_lock);
	return ok;
}

/*
 * blind reads the lane's input, rejects c >= n (as OpenSSL does) and blinds
 * it: c' = c * r^e mod n, keeping r^-1 to unblind the result.
 */
static int blind(struct kw_rsa_batch_key *k, struct lane *l, BN_CTX *ctx)
{
	int ok;

	if (BN_bin2bn(l->item->in, (int)k->bytes, l->c) == NULL || BN_ucmp(l->c, k->n) >= 0)
		return -KW_ECRYPTO;
	ok = blind_take(k, l->c, l->unblind, ctx);
	if (!ok || BN_bn2binpad(l->c, l->buf, (int)k->bytes) < 0)
		return -KW_ECRYPTO;
	return 0;
}

/*
 * finish checks the kernel's result s' against the blinded input (s'^e ==
 * c' mod n) unless the kernel did (verified), unblinds it and writes it out. A failed check is
 * recomputed by OpenSSL and counted: a wrong result never leaves.
 */
static void finish(struct kw_rsa_batch_key *k, struct lane *l, bool verified, BN_CTX *ctx)
{
	struct kw_rsa_batch_item *it = l->item;

	/* The kernel checks RSA-2048 with e = 65537 itself (8 lanes at once, much cheaper). */
	if (BN_bin2bn(l->buf, (int)k->bytes, l->s) != NULL &&
	    (verified || (BN_mod_exp_mont(l->v, l->s, k->e, k->n, ctx, k->mont_n) == 1 &&
	                  BN_cmp(l->v, l->c) == 0)) &&
	    BN_mod_mul_montgomery(l->s, l->s, l->unblind, k->mont_n, ctx) == 1 &&
	    BN_bn2binpad(l->s, it->out, (int)k->bytes) >= 0) {
		it->rc = 0;
		return;
	}
	ERR_clear_error();
	atomic_fetch_add_explicit(&st_verify_failed, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&st_openssl_lanes, 1, memory_order_relaxed);
	it->rc = openssl_lane(k, it->in, it->out);
}

static void lanes_free(struct lane *lanes, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		BN_clear_free(lanes[i].c);
		BN_clear_free(lanes[i].unblind);
		BN_clear_free(lanes[i].s);
		BN_clear_free(lanes[i].v);
	}
	OPENSSL_cleanse(lanes, n * sizeof(*lanes));
}

/*
 * run_kernel computes items (all of one modulus size, each with a kernel
 * key) in one kernel call. false if the lanes could not even be set up (the
 * caller then gives them all to OpenSSL).
 */
static bool run_kernel(struct kw_rsa_batch_item **items, size_t n)
{
	struct lane lanes[KW_RSA_BATCH_MAX];
	const struct kw_mb_key *keys[KW_RSA_BATCH_MAX];
	uint8_t *bufs[KW_RSA_BATCH_MAX];
	bool verified[KW_RSA_BATCH_MAX] = {false};
	size_t slot[KW_RSA_BATCH_MAX];
	BN_CTX *ctx = BN_CTX_new();
	bool ok = ctx != NULL;
	size_t used = 0;

	memset(lanes, 0, sizeof(lanes));
	for (size_t i = 0; ok && i < n; i++) {
		struct lane *l = &lanes[i];
		l->item = items[i];
		l->c = BN_new();
		l->unblind = BN_new();
		l->s = BN_new();
		l->v = BN_new();
		ok = l->c != NULL && l->unblind != NULL && l->s != NULL && l->v != NULL;
	}
	for (size_t i = 0; ok && i < n; i++) {
		struct kw_rsa_batch_key *k = (struct kw_rsa_batch_key *)items[i]->key;
		items[i]->rc = blind(k, &lanes[i], ctx);
		if (items[i]->rc != 0) {
			memset(items[i]->out, 0, k->bytes);
			continue;
		}
		slot[i] = used;
		keys[used] = k->mb;
		bufs[used] = lanes[i].buf;
		used++;
	}
	if (ok && used > 0) {
		/* In place: each lane's buffer holds c' going in and c'^d mod n coming out. */
		kw_mb_rsa_private(keys, bufs, used, verified);
		atomic_fetch_add_explicit(&st_batches, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&st_lanes, used, memory_order_relaxed);
		for (size_t i = 0; i < n; i++)
			if (items[i]->rc == 0)
				finish((struct kw_rsa_batch_key *)items[i]->key, &lanes[i],
				       verified[slot[i]], ctx);
	}
	lanes_free(lanes, n);
	BN_CTX_free(ctx);
	return ok;
}

static void run_openssl(struct kw_rsa_batch_item *it)
{
	atomic_fetch_add_explicit(&st_openssl_lanes, 1, memory_order_relaxed);
	it->rc = openssl_lane(it->key, it->in, it->out);
}

void kw_rsa_batch_run(struct kw_rsa_batch_item *items, size_t n)
{
	struct kw_rsa_batch_item *group[KW_RSA_BATCH_MAX];
	bool done[KW_RSA_BATCH_MAX] = {false};

	if (n > KW_RSA_BATCH_MAX)
		n = KW_RSA_BATCH_MAX;
	if (!kw_rsa_batch_available()) {
		for (size_t i = 0; i < n; i++)
			run_openssl(&items[i]);
		return;
	}
	/* One kernel call per modulus size present (the kernel's lanes share a size). */
	for (size_t i = 0; i < n; i++) {
		size_t g = 0;
		if (done[i])
			continue;
		for (size_t j = i; j < n; j++) {
			if (!done[j] && items[j].key->bits == items[i].key->bits) {
				group[g++] = &items[j];
				done[j] = true;
			}
		}
		if (g < KW_RSA_BATCH_MIN_KERNEL || !run_kernel(group, g))
			for (size_t j = 0; j < g; j++)
				run_openssl(group[j]);
	}
}

/* ---- padding --------------------------------------------------------------------------- */

/* DER prefixes of DigestInfo (RFC 8017 section 9.2, note 1); MD5-SHA1 has none (TLS 1.0/1.1). */
static const struct {
	uint8_t hash_len, len;
	uint8_t der[19];
} digest_info[] = {
    {20,
     15,
     {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14}},
    {28,
     19,
     {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x04,
      0x05, 0x00, 0x04, 0x1c}},
    {32,
     19,
     {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
      0x05, 0x00, 0x04, 0x20}},
    {48,
     19,
     {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02,
      0x05, 0x00, 0x04, 0x30}},
    {64,
     19,
     {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
      0x05, 0x00, 0x04, 0x40}},
};

static int pad_pkcs1(const struct kw_rsa_batch_key *k, const struct kw_opcode_desc *d,
                     const uint8_t *digest, size_t dlen, uint8_t *block)
{
	uint8_t t[19 + 64];
	size_t tlen = 0;

	if (d->hash_len != 36) { /* every hash but MD5-SHA1 is wrapped in a DigestInfo */
		size_t i = 0;
		while (i < sizeof(digest_info) / sizeof(digest_info[0]) &&
		       digest_info[i].hash_len != d->hash_len)
			i++;
		if (i == sizeof(digest_info) / sizeof(digest_info[0]))
			return -KW_ECRYPTO;
		memcpy(t, digest_info[i].der, digest_info[i].len);
		tlen = digest_info[i].len;
	}
	memcpy(t + tlen, digest, dlen);
	tlen += dlen;
	return RSA_padding_add_PKCS1_type_1(block, (int)k->bytes, t, (int)tlen) == 1 ? 0
	                                                                             : -KW_ECRYPTO;
}

static int pad_pss(const struct kw_rsa_batch_key *k, const struct kw_opcode_desc *d,
                   const uint8_t *digest, uint8_t *block)
{
	const EVP_MD *md = EVP_get_digestbyname(d->md);
	/* Only read: the modulus size decides emLen. The cast drops 3.0's const. */
	RSA *rsa = (RSA *)EVP_PKEY_get0_RSA(k->pkey);

	if (md == NULL || rsa == NULL ||
	    RSA_padding_add_PKCS1_PSS_mgf1(rsa, block, digest, md, md, RSA_PSS_SALTLEN_DIGEST) != 1)
		return -KW_ECRYPTO;
	return 0;
}

int kw_rsa_batch_pad(const struct kw_rsa_batch_key *k, uint8_t opcode, const uint8_t *digest,
                     size_t dlen, uint8_t *block)
{
	const struct kw_opcode_desc *d = kw_opcode_desc(opcode);
	int rc;

	if (d == NULL || d->key_type != KW_KEY_RSA || d->alg == KW_ALG_RSA_DECRYPT ||
	    dlen != d->hash_len)
		return -KW_ECRYPTO;
	rc = d->alg == KW_ALG_RSA_PKCS1 ? pad_pkcs1(k, d, digest, dlen, block)
	                                : pad_pss(k, d, digest, block);
	ERR_clear_error();
	return rc;
}

void kw_rsa_batch_stats(struct kw_rsa_batch_stats *out)
{
	out->batches = atomic_load_explicit(&st_batches, memory_order_relaxed);
	out->lanes = atomic_load_explicit(&st_lanes, memory_order_relaxed);
	out->openssl_lanes = atomic_load_explicit(&st_openssl_lanes, memory_order_relaxed);
	out->verify_failed = atomic_load_explicit(&st_verify_failed, memory_order_relaxed);
}
