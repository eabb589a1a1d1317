/*
 * rsa_mb_bench.c - keyway-rsa-bench: the multi-buffer RSA engine measured on
 * its own (not a test; bench/rsa-mb.sh and bench/rsa-ct.sh run it).
 *
 *   keyway-rsa-bench speed [--bits N] [--batches N]
 *       CPU per RSA sign: OpenSSL's EVP_PKEY_sign (PKCS#1 v1.5, SHA-256) one at
 *       a time, kw_rsa_batch_run on full batches of 8 (padding, blinding,
 *       kernel, public check, unblinding), and the bare kernel.
 *   keyway-rsa-bench dudect [--measurements N] [--fixed-keys 1|8]
 *       dudect-style leak test of the real IFMA kernel: fixed keys against
 *       random keys (all eight lanes of a measurement from one class, classes
 *       interleaved at random), Welch's t on the cycle counts. The fixed class
 *       is one key copied into every lane (1, the default) or a fixed key per
 *       lane (8): the second tells a dependence on the key's value from one on
 *       all lanes carrying the same data.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "keyway/protocol.h"
#include "keyway/rsa_batch.h"
#include "rsa_mb.h"
#include "rsa_mb_kernel.h"

static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static EVP_PKEY *keygen(unsigned bits)
{
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)bits);
	if (k == NULL) {
		fprintf(stderr, "keyway-rsa-bench: RSA key generation failed\n");
		exit(1);
	}
	return k;
}

/* mb_key converts pkey to the kernel's form directly (the bench reaches past the public API). */
static struct kw_mb_key *mb_key(EVP_PKEY *pkey, unsigned bits)
{
	static const char *const names[5] = {
	    OSSL_PKEY_PARAM_RSA_FACTOR1,      OSSL_PKEY_PARAM_RSA_FACTOR2,
	    OSSL_PKEY_PARAM_RSA_EXPONENT1,    OSSL_PKEY_PARAM_RSA_EXPONENT2,
	    OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[5] = {NULL};
	struct kw_mb_key *k = NULL;

	for (int i = 0; i < 5; i++)
		EVP_PKEY_get_bn_param(pkey, names[i], &bn[i]);
	if (kw_mb_key_new(&k, bits, bn[0], bn[1], bn[2], bn[3], bn[4]) != 0) {
		fprintf(stderr, "keyway-rsa-bench: the kernel does not take this key\n");
		exit(1);
	}
	for (int i = 0; i < 5; i++)
		BN_clear_free(bn[i]);
	return k;
}

static int speed(unsigned bits, int batches)
{
	EVP_PKEY *pkeys[8];
	struct kw_rsa_batch_key *keys[8];
	const struct kw_mb_key *mk[8];
	struct kw_rsa_batch_item items[8];
	uint8_t dig[32], block[8][KW_MB_MAX_BYTES], out[8][KW_MB_MAX_BYTES], sig[KW_MB_MAX_BYTES];
	uint8_t *bufs[8];
	EVP_PKEY_CTX *ctx;
	double t0, ossl, batch, kern;
	int n1 = batches * 8 / 2 > 0 ? batches * 8 / 2 : 1;

	if (!kw_rsa_batch_available()) {
		fprintf(stderr,
		        "keyway-rsa-bench: no AVX-512 IFMA here (or KEYWAY_RSA_BATCH_IFMA=off)\n");
		return 1;
	}
	for (int i = 0; i < 8; i++) {
		pkeys[i] = keygen(bits);
		if (kw_rsa_batch_key_new(&keys[i], pkeys[i]) != 0)
			return 1;
		mk[i] = mb_key(pkeys[i], bits);
		bufs[i] = block[i];
	}
	RAND_bytes(dig, sizeof(dig));

	/* OpenSSL, one sign at a time with one initialised context (as openssl speed does). */
	ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkeys[0], NULL);
	if (ctx == NULL || EVP_PKEY_sign_init(ctx) != 1 ||
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) != 1 ||
	    EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) != 1)
		return 1;
	t0 = cpu_now();
	for (int i = 0; i < n1; i++) {
		size_t len = sizeof(sig);
		if (EVP_PKEY_sign(ctx, sig, &len, dig, sizeof(dig)) != 1)
			return 1;
	}
	ossl = (cpu_now() - t0) / n1;
	EVP_PKEY_CTX_free(ctx);

	/* The engine: padding, blinding, kernel, public check, unblinding, 8 keys per batch. */
	t0 = cpu_now();
	for (int b = 0; b < batches; b++) {
		for (int i = 0; i < 8; i++) {
			if (kw_rsa_batch_pad(keys[i], KW_OP_RSA_SIGN_SHA256, dig, 32, block[i]) !=
			    0)
				return 1;
			items[i] = (struct kw_rsa_batch_item){keys[i], block[i], out[i], -1};
		}
		kw_rsa_batch_run(items, 8);
		for (int i = 0; i < 8; i++)
			if (items[i].rc != 0)
				return 1;
	}
	batch = (cpu_now() - t0) / (8.0 * batches);

	/* The bare kernel. */
	t0 = cpu_now();
	for (int b = 0; b < batches; b++)
		kw_mb_rsa_private(mk, bufs, 8, NULL);
	kern = (cpu_now() - t0) / (8.0 * batches);

	printf("rsa%u openssl_sign_us %.1f\n", bits, ossl * 1e6);
	printf("rsa%u batch8_sign_us %.1f\n", bits, batch * 1e6);
	printf("rsa%u kernel8_us %.1f\n", bits, kern * 1e6);
	printf("rsa%u ratio_batch_vs_openssl %.3f\n", bits, batch / ossl);
	for (int i = 0; i < 8; i++) {
		kw_mb_key_free((struct kw_mb_key *)mk[i]);
		kw_rsa_batch_key_free(keys[i]);
		EVP_PKEY_free(pkeys[i]);
	}
	return 0;
}

/* ---- dudect ------------------------------------------------------------------------------- */

static inline uint64_t cycles(void)
{
	unsigned lo, hi;
	__asm__ volatile("lfence; rdtsc; lfence" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

struct welch {
	double n[2], mean[2], m2[2];
};

static void welch_add(struct welch *w, int cls, double x)
{
	double d = x - w->mean[cls];
	w->n[cls] += 1;
	w->mean[cls] += d / w->n[cls];
	w->m2[cls] += d * (x - w->mean[cls]);
}

static double welch_t(const struct welch *w)
{
	double v0 = w->m2[0] / (w->n[0] - 1), v1 = w->m2[1] / (w->n[1] - 1);
	return (w->mean[0] - w->mean[1]) / sqrt(v0 / w->n[0] + v1 / w->n[1]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

#define POOL 32
#define NCROP 3

static int dudect(long total, int fixed_keys)
{
	static const double pct[NCROP] = {0.5, 0.9, 0.99};
	struct kw_mb_key *pool[2][POOL];
	EVP_PKEY *fixed[8] = {NULL};
	uint8_t in[8][256], *bufs[8];
	/* The eight lanes' keys are copied into these before each call, so both classes run
	 * from the same addresses, equally cached: only the key values differ between them. */
	static _Alignas(64) struct kw_mb_key slot[8];
	const struct kw_mb_key *keys[8];
	uint64_t crop[NCROP] = {0}, pilot[10000];
	struct welch raw = {0}, cropped[NCROP];
	double tmax;

	if (!kw_rsa_batch_available()) {
		fprintf(stderr,
		        "keyway-rsa-bench: no AVX-512 IFMA here (or KEYWAY_RSA_BATCH_IFMA=off)\n");
		return 1;
	}
	memset(cropped, 0, sizeof(cropped));
	for (int i = 0; i < fixed_keys; i++)
		fixed[i] = keygen(2048);
	/* Class 0: copies of the fixed keys (lane i draws from the copies of key i % fixed_keys);
	 * class 1: random keys. Same number of structures, so both touch as much memory. */
	for (int i = 0; i < POOL; i++) {
		EVP_PKEY *r = keygen(2048);
		pool[0][i] = mb_key(fixed[i % fixed_keys], 2048);
		pool[1][i] = mb_key(r, 2048);
		EVP_PKEY_free(r);
	}
	for (int i = 0; i < 8; i++)
		bufs[i] = in[i];
	for (long s = -(long)(sizeof(pilot) / sizeof(pilot[0])); s < total; s++) {
		uint8_t rnd[9];
		RAND_bytes(rnd, sizeof(rnd));
		int cls = rnd[8] & 1;
		for (int i = 0; i < 8; i++) {
			/* POOL is a multiple of 8, so a fixed-class lane i keeps key i %
			 * fixed_keys. */
			unsigned pick = cls == 0 ? (unsigned)(rnd[i] % (POOL / fixed_keys)) *
			                                   (unsigned)fixed_keys +
			                               (unsigned)(i % fixed_keys)
			                         : rnd[i] % POOL;
			memcpy(&slot[i], pool[cls][pick], sizeof(slot[i]));
			keys[i] = &slot[i];
			RAND_bytes(in[i], 256); /* the (blinded) input is random in both classes */
			in[i][0] &= 0x3f;
		}
		uint64_t t0 = cycles();
		kw_mb_rsa_private(keys, bufs, 8, NULL);
		uint64_t dt = cycles() - t0;
		if (s < 0) { /* pilot: the crop thresholds, as dudect does */
			pilot[s + (long)(sizeof(pilot) / sizeof(pilot[0]))] = dt;
			if (s == -1) {
				qsort(pilot, sizeof(pilot) / sizeof(pilot[0]), sizeof(pilot[0]),
				      cmp_u64);
				for (int c = 0; c < NCROP; c++)
					crop[c] = pilot[(size_t)(pct[c] * 10000)];
			}
			continue;
		}
		welch_add(&raw, cls, (double)dt);
		for (int c = 0; c < NCROP; c++)
			if (dt < crop[c])
				welch_add(&cropped[c], cls, (double)dt);
		if ((s + 1) % 100000 == 0 || s + 1 == total) {
			tmax = fabs(welch_t(&raw));
			printf("measurements %ld fixed %.0f random %.0f mean_cycles %.0f %.0f "
			       "t_raw %.2f",
			       s + 1, raw.n[0], raw.n[1], raw.mean[0], raw.mean[1], welch_t(&raw));
			for (int c = 0; c < NCROP; c++) {
				double t = welch_t(&cropped[c]);
				printf(" t_p%.0f %.2f", pct[c] * 100, t);
				if (fabs(t) > tmax)
					tmax = fabs(t);
			}
			printf(" max_abs_t %.2f\n", tmax);
			fflush(stdout);
		}
	}
	tmax = fabs(welch_t(&raw));
	for (int c = 0; c < NCROP; c++)
		if (fabs(welch_t(&cropped[c])) > tmax)
			tmax = fabs(welch_t(&cropped[c]));
	printf("RESULT rsa-ct-max-t %.2f 4.5 %s\n", tmax, tmax < 4.5 ? "PASS" : "FAIL");
	for (int i = 0; i < POOL; i++) {
		kw_mb_key_free(pool[0][i]);
		kw_mb_key_free(pool[1][i]);
	}
	for (int i = 0; i < fixed_keys; i++)
		EVP_PKEY_free(fixed[i]);
	OPENSSL_cleanse(slot, sizeof(slot));
	return tmax < 4.5 ? 0 : 1;
}

int main(int argc, char **argv)
{
	unsigned bits = 2048;
	long n = 0;
	int fixed_keys = 1;

	for (int i = 2; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--bits") == 0)
			bits = (unsigned)atoi(argv[i + 1]);
		else if (strcmp(argv[i], "--batches") == 0 ||
		         strcmp(argv[i], "--measurements") == 0)
			n = atol(argv[i + 1]);
		else if (strcmp(argv[i], "--fixed-keys") == 0)
			fixed_keys = atoi(argv[i + 1]);
	}
	if (fixed_keys != 1 && fixed_keys != 8) {
		fprintf(stderr, "keyway-rsa-bench: --fixed-keys: expected 1 or 8\n");
		return 2;
	}
	if (argc >= 2 && strcmp(argv[1], "speed") == 0 && kw_rsa_batch_supported_bits(bits))
		return speed(bits, n > 0 ? (int)n : 200);
	if (argc >= 2 && strcmp(argv[1], "dudect") == 0)
		return dudect(n > 0 ? n : 1000000, fixed_keys);
	fprintf(stderr, "usage: keyway-rsa-bench speed [--bits 2048|3072|4096] [--batches N]\n"
	                "       keyway-rsa-bench dudect [--measurements N] [--fixed-keys 1|8]\n");
	return 2;
}
