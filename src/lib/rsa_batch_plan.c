/* rsa_batch_plan.c - whether a multi-buffer RSA batch pays (see keyway/rsa_batch_plan.h). */
#include "keyway/rsa_batch_plan.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "keyway/config.h"
#include "keyway/log.h"
#include "keyway/protocol.h"

#define PLAN_SIZES 17 /* modulus sizes by 64-byte steps, up to 8192 bits */
#define REPS 3        /* timed runs of each; the fastest counts (the others met preemption) */

/* Per modulus size: 0 until measured, then the threshold (1..KW_RSA_BATCH_NEVER). */
static _Atomic unsigned plan[PLAN_SIZES];

static uint64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

unsigned kw_rsa_batch_lanes_needed(uint64_t low_ns, uint64_t full_ns, uint64_t openssl_ns)
{
	/* A zero is a measurement that failed (time_batch returns 0 when a lane did): never
	 * batch on it -- a failed full batch must not read as a free one. */
	if (openssl_ns == 0 || low_ns == 0 || full_ns == 0)
		return KW_RSA_BATCH_NEVER;
	/* Gatherers fill batches up to KW_RSA_BATCH_MAX, so a threshold must pay from there
	 * down: walk from the full batch to the smallest kernel run, stopping at the first
	 * size that does not pay (an unoptimised build's kernel can cost more per lane than
	 * OpenSSL, which a small batch's measurement alone would not show). */
	_Static_assert(KW_RSA_BATCH_MAX > KW_RSA_BATCH_MIN_KERNEL, "two batch sizes to measure");
	const int64_t span = KW_RSA_BATCH_MAX - KW_RSA_BATCH_MIN_KERNEL;
	unsigned lanes = KW_RSA_BATCH_NEVER;
	for (unsigned n = KW_RSA_BATCH_MAX; n >= KW_RSA_BATCH_MIN_KERNEL; n--) {
		/* The cost of n lanes, on the line through the two measured sizes. */
		int64_t cost = (int64_t)low_ns + ((int64_t)full_ns - (int64_t)low_ns) *
		                                     (int64_t)(n - KW_RSA_BATCH_MIN_KERNEL) / span;
		if (cost >= (int64_t)(n * openssl_ns))
			break;
		lanes = n;
	}
	return lanes;
}

/* time_batch is the fastest of REPS kernel runs of n lanes on block. */
static uint64_t time_batch(const struct kw_rsa_batch_key *k, const uint8_t *block, uint8_t *out,
                           size_t n)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	size_t len = kw_rsa_batch_key_bytes(k);
	uint64_t best = UINT64_MAX;

	for (int r = 0; r <= REPS; r++) {
		for (size_t i = 0; i < n; i++)
			items[i] = (struct kw_rsa_batch_item){
			    .key = k, .in = block, .out = out + i * len, .rc = 0};
		uint64_t t0 = cpu_ns();
		kw_rsa_batch_run(items, n);
		uint64_t t = cpu_ns() - t0;
		if (r > 0 && t < best) /* the first run warms the caches up */
			best = t;
		for (size_t i = 0; i < n; i++)
			if (items[i].rc != 0)
				return 0;
	}
	return best;
}

/* time_openssl is the fastest of REPS OpenSSL raw private operations on block. */
static uint64_t time_openssl(EVP_PKEY *pkey, const uint8_t *block, size_t len, uint8_t *out)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	uint64_t best = UINT64_MAX;

	if (ctx == NULL || EVP_PKEY_decrypt_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) != 1)
		best = 0;
	for (int r = 0; r <= REPS && best != 0; r++) {
		size_t olen = len;
		uint64_t t0 = cpu_ns();
		int ok = EVP_PKEY_decrypt(ctx, out, &olen, block, len);
		uint64_t t = cpu_ns() - t0;
		if (ok != 1)
			best = 0;
		else if (r > 0 && t < best)
			best = t;
	}
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return best;
}

/* measure times the kernel against OpenSSL on k and returns the threshold. */
static unsigned measure(const struct kw_rsa_batch_key *k, EVP_PKEY *pkey)
{
	size_t len = kw_rsa_batch_key_bytes(k);
	uint8_t digest[32] = {0};
	uint8_t *block = malloc(len), *out = malloc(len * KW_RSA_BATCH_MAX);
	unsigned lanes = KW_RSA_BATCH_NEVER;

	/* A PKCS#1 block of a constant digest: what a signature exponentiates. */
	if (block != NULL && out != NULL &&
	    kw_rsa_batch_pad(k, KW_OP_RSA_SIGN_SHA256, digest, sizeof(digest), block) == 0) {
		uint64_t low = time_batch(k, block, out, KW_RSA_BATCH_MIN_KERNEL);
		uint64_t full = time_batch(k, block, out, KW_RSA_BATCH_MAX);
		uint64_t ossl = time_openssl(pkey, block, len, out);
		lanes = kw_rsa_batch_lanes_needed(low, full, ossl);
		kw_debug("RSA-%zu batches: %d lanes %llu ns, %d lanes %llu ns, OpenSSL %llu ns: "
		         "batch from %u lanes",
		         len * 8, KW_RSA_BATCH_MIN_KERNEL, (unsigned long long)low,
		         KW_RSA_BATCH_MAX, (unsigned long long)full, (unsigned long long)ossl,
		         lanes);
	}
	if (out != NULL)
		OPENSSL_cleanse(out, len * KW_RSA_BATCH_MAX);
	free(out);
	free(block);
	return lanes;
}

/* env_lanes is KEYWAY_RSA_BATCH_MIN_LANES (1..KW_RSA_BATCH_NEVER), or 0 when unset or bad. */
static unsigned env_lanes(void)
{
	const char *v = getenv("KEYWAY_RSA_BATCH_MIN_LANES");
	unsigned n;
	if (v == NULL || kw_config_parse_uint(v, 1, KW_RSA_BATCH_NEVER, &n) < 0)
		return 0;
	return n;
}

unsigned kw_rsa_batch_min_lanes(const struct kw_rsa_batch_key *k, EVP_PKEY *pkey)
{
	size_t len = kw_rsa_batch_key_bytes(k);
	size_t slot = len / 64;
	unsigned lanes;

	/* Before the CPU check: tests drive batches where the kernel does not run (its
	 * OpenSSL path then computes each lane, with the same results). */
	if ((lanes = env_lanes()) != 0)
		return lanes;
	if (!kw_rsa_batch_available())
		return KW_RSA_BATCH_NEVER;
	if (len % 64 != 0 || slot >= PLAN_SIZES)
		return KW_RSA_BATCH_NEVER; /* no such RSA key in practice: not worth a table */
	if ((lanes = atomic_load_explicit(&plan[slot], memory_order_relaxed)) != 0)
		return lanes;
	/* Two threads may both measure the first time: same answer, no harm. */
	lanes = measure(k, pkey);
	atomic_store_explicit(&plan[slot], lanes, memory_order_relaxed);
	return lanes;
}
