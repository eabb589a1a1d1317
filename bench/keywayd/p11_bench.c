/*
 * p11_bench.c - a PKCS#11 token driven directly: C_SignInit + C_Sign in a
 * loop on T threads, each with its own session, with keywayd's own PKCS#11
 * code (pkcs11.c: the same key lookup, mechanism and session pool) but none
 * of keywayd's loop, executor, device queue or protocol. The denominator of
 * bench/keyserver.sh --pkcs11:
 *
 *     keywayd-bench-p11 --module PATH --uri URI --op rsa|ecdsa [--threads T] [--seconds S]
 *
 * prints "OPS CPU-SECONDS" (process user+system time over the signing loop).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "keyway/opcodes.h"
#include "pkcs11.h"

struct ctx {
	const struct kwd_p11_key *key;
	const struct kw_opcode_desc *desc;
	double until;
	atomic_ulong ops, errors;
};

static double clock_s(clockid_t id)
{
	struct timespec t;
	clock_gettime(id, &t);
	return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *loop(void *arg)
{
	struct ctx *c = arg;
	uint8_t in[32], out[KW_RESULT_MAX];
	size_t len;
	unsigned long n = 0, bad = 0;

	memset(in, 0x5a, sizeof(in));
	while (clock_s(CLOCK_MONOTONIC) < c->until) {
		/* Batches of 16 between clock reads keep the clock out of the cost. */
		for (int i = 0; i < 16; i++) {
			in[0] = (uint8_t)n;
			if (kwd_p11_run(c->key, c->desc, in, sizeof(in), out, sizeof(out), &len) ==
			    KW_ERR_NONE)
				n++;
			else
				bad++;
		}
	}
	atomic_fetch_add(&c->ops, n);
	atomic_fetch_add(&c->errors, bad);
	return NULL;
}

static const char *arg_of(int argc, char **argv, const char *name, const char *def)
{
	for (int i = 1; i + 1 < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return argv[i + 1];
	return def;
}

int main(int argc, char **argv)
{
	const char *module = arg_of(argc, argv, "--module", NULL);
	const char *uri = arg_of(argc, argv, "--uri", NULL);
	const char *op = arg_of(argc, argv, "--op", "ecdsa");
	unsigned threads = (unsigned)atoi(arg_of(argc, argv, "--threads", "1"));
	double seconds = atof(arg_of(argc, argv, "--seconds", "1"));
	struct kwd_p11_set *set = NULL;
	char err[1024];

	if (uri == NULL || threads == 0 || threads > 256 || seconds <= 0) {
		fprintf(stderr, "usage: keywayd-bench-p11 --module PATH --uri URI --op rsa|ecdsa "
		                "[--threads T] [--seconds S]\n");
		return 2;
	}
	const char *uris[] = {uri};
	struct kwd_p11_options o = {.module = module, .uris = uris, .nuris = 1};
	if (kwd_p11_load(&o, &set, err, sizeof(err)) != 0) {
		fprintf(stderr, "keywayd-bench-p11: %s\n", err);
		return 2;
	}
	struct ctx c = {
	    .key = kwd_p11_set_key(set, 0),
	    .desc = kw_opcode_desc(strcmp(op, "rsa") == 0 ? KW_OP_RSA_SIGN_SHA256
	                                                  : KW_OP_ECDSA_SIGN_SHA256),
	};
	pthread_t th[256];
	double cpu0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
	c.until = clock_s(CLOCK_MONOTONIC) + seconds;
	for (unsigned i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, loop, &c);
	for (unsigned i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	double cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu0;
	printf("%lu %.6f\n", (unsigned long)atomic_load(&c.ops), cpu);
	unsigned long errors = atomic_load(&c.errors);
	kwd_p11_set_unref(set);
	kwd_p11_wait_teardowns();
	if (errors > 0) {
		fprintf(stderr, "keywayd-bench-p11: %lu operations failed\n", errors);
		return 1;
	}
	return 0;
}
