/*
 * exec_bench.c - CPU cost of kwd_exec_run per operation against what
 * `openssl speed` measures (one EVP_PKEY_CTX initialised once, then bare
 * EVP_PKEY_sign / EVP_DigestSign). Not a unit test: run it by hand,
 *     keywayd-bench-exec [seconds-per-round]
 * and compare with `openssl speed -seconds 3 rsa2048 ecdsap256 ed25519`.
 * Rounds of the two alternate so the noise of a shared machine hits both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "keygen.h"
#include "keystore.h"
#include "keyway/keyid.h"
#include "exec.h"

#define ROUNDS 7

static double cpu_now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

struct bench {
	const char *name;
	EVP_PKEY *key;
	uint8_t opcode;
	size_t len;
	/* baseline */
	EVP_PKEY_CTX *pctx;
	EVP_MD_CTX *mctx;
};

static int run_keywayd(struct kwd_exec *s, const struct kwd_keystore *ks, struct bench *b,
                       const uint8_t *in, long n)
{
	struct kw_msg m = {.has_opcode = true, .opcode = b->opcode, .has_ski = true};
	struct kwd_exec_result r;
	kw_key_ski(b->key, m.ski);
	m.payload.data = in;
	m.payload.len = b->len;
	for (long i = 0; i < n; i++) {
		kwd_exec_run(s, ks, &m, &r);
		if (r.opcode != KW_OP_RESPONSE)
			return -1;
		kwd_exec_result_cleanse(&r);
	}
	return 0;
}

static int run_baseline(struct bench *b, const uint8_t *in, long n)
{
	uint8_t sig[1024];
	for (long i = 0; i < n; i++) {
		size_t len = sizeof(sig);
		int ok = b->mctx != NULL ? EVP_DigestSign(b->mctx, sig, &len, in, b->len)
		         : b->opcode == KW_OP_RSA_DECRYPT
		             ? EVP_PKEY_decrypt(b->pctx, sig, &len, in, b->len)
		             : EVP_PKEY_sign(b->pctx, sig, &len, in, b->len);
		if (ok != 1)
			return -1;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
	double secs = argc > 1 ? atof(argv[1]) : 1.0;
	char *dir = make_tmpdir();
	EVP_PKEY *rsa = gen_rsa(2048), *ec = gen_ec("P-256"), *ed = gen_named("ED25519");
	struct kwd_keystore *ks = NULL;
	struct kwd_exec *s = NULL;
	char err[256];
	uint8_t in[256];

	write_key(join(dir, "rsa.key"), rsa, FMT_PKCS8_PEM, 0600);
	write_key(join(dir, "ec.key"), ec, FMT_PKCS8_PEM, 0600);
	write_key(join(dir, "ed.key"), ed, FMT_PKCS8_PEM, 0600);
	if (kwd_keystore_load(dir, NULL, &ks, err, sizeof(err)) != 0 || kwd_exec_new(&s) != 0) {
		fprintf(stderr, "setup: %s\n", err);
		return 1;
	}

	struct bench benches[] = {
	    {"rsa2048 pkcs1-sha256 sign", rsa, KW_OP_RSA_SIGN_SHA256, 32, NULL, NULL},
	    {"rsa2048 pss-sha256 sign", rsa, KW_OP_RSA_PSS_SIGN_SHA256, 32, NULL, NULL},
	    {"rsa2048 raw decrypt", rsa, KW_OP_RSA_DECRYPT, 256, NULL, NULL},
	    {"ecdsa p256 sha256 sign", ec, KW_OP_ECDSA_SIGN_SHA256, 32, NULL, NULL},
	    {"ed25519 sign (32 B msg)", ed, KW_OP_ED25519_SIGN, 32, NULL, NULL},
	};
	size_t nb = sizeof(benches) / sizeof(benches[0]);

	printf("%-27s %12s %12s %7s   (median of %d rounds, CPU us/op)\n", "operation", "keywayd",
	       "baseline", "ratio", ROUNDS);
	for (size_t i = 0; i < nb; i++) {
		struct bench *b = &benches[i];
		/* Baseline as openssl speed does it (no digest set, ctx reused). */
		if (b->opcode == KW_OP_ED25519_SIGN) {
			b->mctx = EVP_MD_CTX_new();
			EVP_DigestSignInit(b->mctx, NULL, NULL, NULL, b->key);
		} else {
			b->pctx = EVP_PKEY_CTX_new(b->key, NULL);
			if (b->opcode == KW_OP_RSA_DECRYPT) {
				EVP_PKEY_decrypt_init(b->pctx);
				EVP_PKEY_CTX_set_rsa_padding(b->pctx, RSA_NO_PADDING);
			} else {
				EVP_PKEY_sign_init(b->pctx);
			}
		}
		RAND_bytes(in, sizeof(in));
		in[0] = 0; /* below any modulus for raw decrypt */
		/* Calibrate ops per round from a short run. */
		long n = 20;
		double t0 = cpu_now();
		if (run_keywayd(s, ks, b, in, n) != 0 || run_baseline(b, in, n) != 0) {
			fprintf(stderr, "%s: operation failed\n", b->name);
			ERR_print_errors_fp(stderr);
			return 1;
		}
		double per = (cpu_now() - t0) / (2 * n);
		n = (long)(secs / per) + 1;

		double kw[ROUNDS], base[ROUNDS];
		for (int r = 0; r < ROUNDS; r++) {
			double t = cpu_now();
			run_keywayd(s, ks, b, in, n);
			kw[r] = (cpu_now() - t) / (double)n * 1e6;
			t = cpu_now();
			run_baseline(b, in, n);
			base[r] = (cpu_now() - t) / (double)n * 1e6;
		}
		qsort(kw, ROUNDS, sizeof(double), cmp_double);
		qsort(base, ROUNDS, sizeof(double), cmp_double);
		printf("%-27s %12.2f %12.2f %7.3f   (min %.2f vs %.2f; %.0f ops/s)\n", b->name,
		       kw[ROUNDS / 2], base[ROUNDS / 2], kw[ROUNDS / 2] / base[ROUNDS / 2], kw[0],
		       base[0], 1e6 / kw[ROUNDS / 2]);
		EVP_PKEY_CTX_free(b->pctx);
		EVP_MD_CTX_free(b->mctx);
	}
	kwd_exec_free(s);
	kwd_keystore_unref(ks);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	rm_tree(dir);
	return 0;
}
