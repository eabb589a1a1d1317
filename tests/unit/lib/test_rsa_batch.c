/*
 * test_rsa_batch.c - the multi-buffer RSA engine: every lane equal to
 * OpenSSL's raw private operation (random keys and inputs, mixed keys,
 * partial batches), padded signatures that verify, bad inputs costing their
 * lane only, and the counters.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/opcodes.h"
#include "keyway/protocol.h"
#include "keyway/rsa_batch.h"

#define NKEYS 5

static EVP_PKEY *pkeys[NKEYS];
static struct kw_rsa_batch_key *keys[NKEYS];

/* ref computes in^d mod n with OpenSSL's raw private operation. */
static int ref(EVP_PKEY *pkey, const uint8_t *in, uint8_t *out, size_t k)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	size_t len = k;
	int ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) == 1 &&
	         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
	         EVP_PKEY_decrypt(ctx, out, &len, in, k) == 1 && len == k;
	EVP_PKEY_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* random_below_n: random bytes with the top byte below the modulus's (so < n). */
static void random_below_n(uint8_t *in, size_t k)
{
	RAND_bytes(in, (int)k);
	in[0] &= 0x7f;
}

static void test_unsupported(void)
{
	struct kw_rsa_batch_key *k = (struct kw_rsa_batch_key *)1;
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *small = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);

	CHECK_EQ(kw_rsa_batch_key_new(&k, ec), -ENOTSUP);
	CHECK(k == NULL);
	CHECK_EQ(kw_rsa_batch_key_new(&k, small), -ENOTSUP);
	CHECK(kw_rsa_batch_supported_bits(2048));
	CHECK(!kw_rsa_batch_supported_bits(1024));
	CHECK(!kw_rsa_batch_supported_bits(2047));
	kw_rsa_batch_key_free(NULL);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(small);
}

/*
 * test_random_batches: many batches of random sizes 1..8, each lane a random
 * key and a random input; every lane must equal OpenSSL's result.
 */
static void test_random_batches(int rounds)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][256], out[KW_RSA_BATCH_MAX][256], want[256];
	int bad = 0;

	for (int r = 0; r < rounds; r++) {
		uint8_t pick[1 + KW_RSA_BATCH_MAX];
		RAND_bytes(pick, sizeof(pick));
		size_t n = 1 + pick[0] % KW_RSA_BATCH_MAX;
		for (size_t i = 0; i < n; i++) {
			random_below_n(in[i], 256);
			items[i] = (struct kw_rsa_batch_item){keys[pick[1 + i] % NKEYS], in[i],
			                                      out[i], -1};
		}
		kw_rsa_batch_run(items, n);
		for (size_t i = 0; i < n; i++) {
			EVP_PKEY *pk = pkeys[pick[1 + i] % NKEYS];
			if (items[i].rc != 0 || ref(pk, in[i], want, 256) != 0 ||
			    memcmp(want, out[i], 256) != 0)
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
}

/* test_edges: 0, 1 and n-1 as inputs; an input >= n fails its lane only. */
static void test_edges(void)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][256], out[KW_RSA_BATCH_MAX][256], want[256];
	memset(in[0], 0, 256);
	memset(in[1], 0, 256);
	in[1][255] = 1;
	/* n - 1 is the largest input; n itself is out of range. */
	BIGNUM *n = NULL;
	EVP_PKEY_get_bn_param(pkeys[0], "n", &n);
	BN_sub_word(n, 1);
	BN_bn2binpad(n, in[2], 256);
	BN_add_word(n, 1);
	BN_bn2binpad(n, in[3], 256); /* exactly n: out of range */
	BN_free(n);
	/* Filled up to a kernel batch with random inputs (checked too). */
	for (int i = 4; i < KW_RSA_BATCH_MAX; i++)
		random_below_n(in[i], 256);
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++)
		items[i] = (struct kw_rsa_batch_item){keys[0], in[i], out[i], -1};
	kw_rsa_batch_run(items, KW_RSA_BATCH_MAX);
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
		if (i == 3)
			continue;
		CHECK_EQ(items[i].rc, 0);
		CHECK(ref(pkeys[0], in[i], want, 256) == 0 && memcmp(want, out[i], 256) == 0);
	}
	CHECK_EQ(items[3].rc, -KW_ECRYPTO);
}

/*
 * test_min_kernel: fewer than KW_RSA_BATCH_MIN_KERNEL lanes go to OpenSSL
 * (the kernel's cost is per call); that many use the kernel, with one bad
 * input among them failing alone.
 */
static void test_min_kernel(void)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MIN_KERNEL];
	uint8_t in[KW_RSA_BATCH_MIN_KERNEL][256], out[KW_RSA_BATCH_MIN_KERNEL][256], want[256];
	struct kw_rsa_batch_stats a, b, c;

	for (int i = 0; i < KW_RSA_BATCH_MIN_KERNEL; i++) {
		random_below_n(in[i], 256);
		items[i] = (struct kw_rsa_batch_item){keys[i % NKEYS], in[i], out[i], -1};
	}
	kw_rsa_batch_stats(&a);
	kw_rsa_batch_run(items, KW_RSA_BATCH_MIN_KERNEL - 1);
	kw_rsa_batch_stats(&b);
	CHECK_EQ(b.lanes - a.lanes, 0);
	CHECK_EQ(b.openssl_lanes - a.openssl_lanes, KW_RSA_BATCH_MIN_KERNEL - 1);
	memset(in[0], 0xff, 256); /* >= n */
	kw_rsa_batch_run(items, KW_RSA_BATCH_MIN_KERNEL);
	kw_rsa_batch_stats(&c);
	if (kw_rsa_batch_available()) {
		CHECK_EQ(c.batches - b.batches, 1);
		CHECK_EQ(c.lanes - b.lanes, KW_RSA_BATCH_MIN_KERNEL - 1);
	}
	CHECK_EQ(items[0].rc, -KW_ECRYPTO);
	for (int i = 1; i < KW_RSA_BATCH_MIN_KERNEL; i++) {
		CHECK_EQ(items[i].rc, 0);
		CHECK(ref(pkeys[i % NKEYS], in[i], want, 256) == 0 &&
		      memcmp(want, out[i], 256) == 0);
	}
}

/* test_pad: every RSA sign opcode's block, exponentiated by the batch, verifies with OpenSSL. */
static void test_pad(void)
{
	static const uint8_t ops[] = {
	    KW_OP_RSA_SIGN_MD5SHA1,    KW_OP_RSA_SIGN_SHA1,       KW_OP_RSA_SIGN_SHA224,
	    KW_OP_RSA_SIGN_SHA256,     KW_OP_RSA_SIGN_SHA384,     KW_OP_RSA_SIGN_SHA512,
	    KW_OP_RSA_PSS_SIGN_SHA256, KW_OP_RSA_PSS_SIGN_SHA384, KW_OP_RSA_PSS_SIGN_SHA512,
	};
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t dig[KW_RSA_BATCH_MAX][64], block[KW_RSA_BATCH_MAX][256], sig[KW_RSA_BATCH_MAX][256];
	const size_t nops = sizeof(ops) / sizeof(ops[0]);

	for (size_t base = 0; base < nops; base += KW_RSA_BATCH_MAX) {
		size_t n = nops - base < KW_RSA_BATCH_MAX ? nops - base : KW_RSA_BATCH_MAX;
		for (size_t i = 0; i < n; i++) {
			const struct kw_opcode_desc *d = kw_opcode_desc(ops[base + i]);
			RAND_bytes(dig[i], sizeof(dig[i]));
			CHECK_EQ(kw_rsa_batch_pad(keys[i % NKEYS], ops[base + i], dig[i],
			                          d->hash_len, block[i]),
			         0);
			items[i] =
			    (struct kw_rsa_batch_item){keys[i % NKEYS], block[i], sig[i], -1};
		}
		kw_rsa_batch_run(items, n);
		for (size_t i = 0; i < n; i++) {
			const struct kw_opcode_desc *d = kw_opcode_desc(ops[base + i]);
			EVP_PKEY_CTX *ctx =
			    EVP_PKEY_CTX_new_from_pkey(NULL, pkeys[i % NKEYS], NULL);
			const EVP_MD *md = EVP_get_digestbyname(d->md);
			bool pss = d->alg == KW_ALG_RSA_PSS;
			int v = -1;
			CHECK_EQ(items[i].rc, 0);
			if (ctx != NULL && md != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
			    EVP_PKEY_CTX_set_rsa_padding(ctx, pss ? RSA_PKCS1_PSS_PADDING
			                                          : RSA_PKCS1_PADDING) == 1 &&
			    EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
			    (!pss ||
			     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1))
				v = EVP_PKEY_verify(ctx, sig[i], 256, dig[i], d->hash_len);
			if (v != 1)
				fprintf(stderr, "opcode 0x%02x does not verify\n", ops[base + i]);
			CHECK_EQ(v, 1);
			EVP_PKEY_CTX_free(ctx);
		}
	}
	/* Not an RSA signature, or a digest of the wrong length. */
	CHECK_EQ(kw_rsa_batch_pad(keys[0], KW_OP_RSA_DECRYPT, dig[0], 0, block[0]), -KW_ECRYPTO);
	CHECK_EQ(kw_rsa_batch_pad(keys[0], KW_OP_ECDSA_SIGN_SHA256, dig[0], 32, block[0]),
	         -KW_ECRYPTO);
	CHECK_EQ(kw_rsa_batch_pad(keys[0], KW_OP_RSA_SIGN_SHA256, dig[0], 31, block[0]),
	         -KW_ECRYPTO);
}

/*
 * bad_dp rebuilds pkey with a wrong CRT exponent dp (d, n, e stay right).
 * OpenSSL's own CRT check then falls back to d, so its result stays correct:
 * the kernel's result for this key is wrong and must be caught.
 */
static EVP_PKEY *bad_dp(EVP_PKEY *pkey)
{
	static const char *const names[] = {"n",
	                                    "e",
	                                    "d",
	                                    "rsa-factor1",
	                                    "rsa-factor2",
	                                    "rsa-exponent1",
	                                    "rsa-exponent2",
	                                    "rsa-coefficient1"};
	BIGNUM *bn[8] = {NULL};
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *out = NULL;

	for (int i = 0; i < 8; i++) {
		CHECK(EVP_PKEY_get_bn_param(pkey, names[i], &bn[i]) == 1);
		if (i == 5)
			BN_sub_word(bn[i], 2); /* dp - 2: still below p, still odd-sized */
		OSSL_PARAM_BLD_push_BN(bld, names[i], bn[i]);
	}
	params = OSSL_PARAM_BLD_to_param(bld);
	CHECK(params != NULL && ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
	      EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, params) == 1);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(ctx);
	for (int i = 0; i < 8; i++)
		BN_clear_free(bn[i]);
	return out;
}

/*
 * test_fault: a corrupted key in one lane costs that lane only: its kernel
 * result fails the public check, OpenSSL recomputes it (correctly) and the
 * counter rises by one; the other lanes come from the kernel.
 */
static void test_fault(void)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][256], out[KW_RSA_BATCH_MAX][256], want[256];
	struct kw_rsa_batch_stats before, after;
	struct kw_rsa_batch_key *bad = NULL;
	EVP_PKEY *pbad = bad_dp(pkeys[1]);

	CHECK_EQ(kw_rsa_batch_key_new(&bad, pbad), 0);
	if (bad == NULL) {
		EVP_PKEY_free(pbad);
		return;
	}
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
		random_below_n(in[i], 256);
		items[i] =
		    (struct kw_rsa_batch_item){i == 3 ? bad : keys[i % NKEYS], in[i], out[i], -1};
	}
	kw_rsa_batch_stats(&before);
	kw_rsa_batch_run(items, KW_RSA_BATCH_MAX);
	kw_rsa_batch_stats(&after);
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
		CHECK_EQ(items[i].rc, 0);
		/* The bad key's lane must still carry the right answer (that of the good key). */
		CHECK(ref(pkeys[i == 3 ? 1 : i % NKEYS], in[i], want, 256) == 0 &&
		      memcmp(want, out[i], 256) == 0);
	}
	if (kw_rsa_batch_available()) {
		CHECK_EQ(after.verify_failed - before.verify_failed, 1);
		CHECK_EQ(after.openssl_lanes - before.openssl_lanes, 1);
		CHECK_EQ(after.lanes - before.lanes, KW_RSA_BATCH_MAX);
	}
	kw_rsa_batch_key_free(bad);
	EVP_PKEY_free(pbad);
}

/*
 * size_of_lane: round r of test_sizes. Rounds 0-2 give all eight lanes one
 * size (a full kernel batch each); later rounds mix them: six lanes of one
 * size (a kernel call) and two of another (OpenSSL, below the kernel's minimum).
 */
static int size_of_lane(int r, int i)
{
	return r < 3 ? r : (r + (i >= 6)) % 3;
}

/* test_sizes: RSA-3072 and -4096 beside RSA-2048 (one kernel call per size present). */
static void test_sizes(int rounds)
{
	static const unsigned sizes[] = {3072, 4096};
	EVP_PKEY *pk[3] = {pkeys[0]};
	struct kw_rsa_batch_key *k[3] = {keys[0]};
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][512], out[KW_RSA_BATCH_MAX][512], want[512];
	struct kw_rsa_batch_stats before, after;
	int bad = 0;

	for (int i = 1; i < 3; i++) {
		pk[i] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)sizes[i - 1]);
		CHECK(kw_rsa_batch_supported_bits(sizes[i - 1]));
		CHECK_EQ(kw_rsa_batch_key_new(&k[i], pk[i]), 0);
		if (k[i] == NULL)
			return;
		CHECK_EQ(kw_rsa_batch_key_bytes(k[i]), sizes[i - 1] / 8);
	}
	kw_rsa_batch_stats(&before);
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
			int s = size_of_lane(r, i);
			size_t len = kw_rsa_batch_key_bytes(k[s]);
			random_below_n(in[i], len);
			items[i] = (struct kw_rsa_batch_item){k[s], in[i], out[i], -1};
		}
		kw_rsa_batch_run(items, KW_RSA_BATCH_MAX);
		for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
			int s = size_of_lane(r, i);
			size_t len = kw_rsa_batch_key_bytes(k[s]);
			if (items[i].rc != 0 || ref(pk[s], in[i], want, len) != 0 ||
			    memcmp(want, out[i], len) != 0)
				bad++;
		}
	}
	CHECK_EQ(bad, 0);
	kw_rsa_batch_stats(&after);
	/* The kernel took 8 lanes in each of the first three rounds, 6 in each later one. */
	if (kw_rsa_batch_available())
		CHECK_EQ(after.lanes - before.lanes, 3 * 8 + (rounds - 3) * 6);
	/* ...and got them right: a wrong kernel result would be redone by OpenSSL and counted. */
	CHECK_EQ(after.verify_failed, before.verify_failed);
	for (int i = 1; i < 3; i++) {
		kw_rsa_batch_key_free(k[i]);
		EVP_PKEY_free(pk[i]);
	}
}

/* thread_batches: full batches on the shared keys; returns the number of wrong lanes. */
static void *thread_batches(void *arg)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][256], out[KW_RSA_BATCH_MAX][256], want[256];
	intptr_t bad = 0;

	(void)arg;
	for (int r = 0; r < 40; r++) {
		for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
			random_below_n(in[i], 256);
			items[i] = (struct kw_rsa_batch_item){keys[i % NKEYS], in[i], out[i], -1};
		}
		kw_rsa_batch_run(items, KW_RSA_BATCH_MAX);
		for (int i = 0; i < KW_RSA_BATCH_MAX; i++)
			if (items[i].rc != 0 || ref(pkeys[i % NKEYS], in[i], want, 256) != 0 ||
			    memcmp(want, out[i], 256) != 0)
				bad++;
	}
	return (void *)bad;
}

/*
 * test_threads: keys are shared by threads (their blinding pair moves on
 * under a lock at every use); concurrent batches must all stay right.
 */
static void test_threads(void)
{
	pthread_t t[3];
	intptr_t bad = 0;

	for (int i = 0; i < 3; i++)
		CHECK_EQ(pthread_create(&t[i], NULL, thread_batches, NULL), 0);
	for (int i = 0; i < 3; i++) {
		void *rv = NULL;
		pthread_join(t[i], &rv);
		bad += (intptr_t)rv;
	}
	CHECK_EQ(bad, 0);
}

int main(void)
{
	struct kw_rsa_batch_stats before, after;
	const char *env = getenv("KW_RSA_BATCH_ROUNDS");
	int rounds = env != NULL ? atoi(env) : 2000;

	for (int i = 0; i < NKEYS; i++) {
		pkeys[i] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		CHECK(pkeys[i] != NULL);
		CHECK_EQ(kw_rsa_batch_key_new(&keys[i], pkeys[i]), 0);
		CHECK_EQ(kw_rsa_batch_key_bytes(keys[i]), 256);
	}
	if (check_failures)
		CHECK_DONE();
	test_unsupported();
	kw_rsa_batch_stats(&before);
	test_random_batches(rounds);
	test_edges();
	test_pad();
	kw_rsa_batch_stats(&after);
	test_fault();
	test_sizes(6);
	test_min_kernel();
	test_threads();
	/* Where the kernel runs, it computed the lanes; elsewhere OpenSSL did. */
	if (kw_rsa_batch_available()) {
		CHECK(after.lanes > before.lanes);
		CHECK_EQ(after.verify_failed, before.verify_failed);
	} else {
		CHECK(after.openssl_lanes > before.openssl_lanes);
		CHECK_EQ(after.lanes, before.lanes);
	}
	fprintf(stderr,
	        "rsa_batch: kernel %s, %llu batches, %llu kernel lanes, %llu OpenSSL lanes\n",
	        kw_rsa_batch_available() ? "on" : "off", (unsigned long long)after.batches,
	        (unsigned long long)after.lanes, (unsigned long long)after.openssl_lanes);
	for (int i = 0; i < NKEYS; i++) {
		kw_rsa_batch_key_free(keys[i]);
		EVP_PKEY_free(pkeys[i]);
	}
	CHECK_DONE();
}
