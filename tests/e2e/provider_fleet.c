/*
 * provider_fleet.c - signs continuously through the keyway provider (built
 * in, internal polling: the provider's I/O thread and its keyless backend)
 * in a few threads, verifies every signature with the public key, and
 * reports once a second, so a test can kill, stop or drain keyservers
 * underneath and see what the signers saw.
 *
 * Usage: provider_fleet --key REF.pem --pub PUB.pem [--threads T] [--seconds S]
 *
 * Each second (and at the end, as "total") it prints
 *   sec N ok OK fail F max_ms M fail_max_ms FM
 * where M is the slowest successful signature of that second and FM the
 * slowest failure; then "stats retries R failovers F fallbacks B" from
 * kw_provider_stats. The first few failures' OpenSSL errors go to stderr.
 * It stops after S seconds, or earlier when its standard input says "quit".
 * Exit 0 when it ran (failures are the test's to judge), 2 on bad usage.
 */
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "keyway/provider_api.h"

#define MAX_THREADS 32

static EVP_PKEY *key, *pub;
static atomic_bool stop;
static atomic_int printed_errors;

/* Per second: counts and the worst latencies (microseconds); the main thread swaps them out. */
static atomic_ullong ok_n, fail_n, max_us, fail_max_us;
static unsigned long long tot_ok, tot_fail, tot_max_us, tot_fail_max_us;

static uint64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void atomic_max(atomic_ullong *a, unsigned long long v)
{
	unsigned long long cur = atomic_load(a);
	while (v > cur && !atomic_compare_exchange_weak(a, &cur, v))
		;
}

static bool sign_once(void)
{
	unsigned char msg[64], sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *md = EVP_MD_CTX_new();
	bool ok = false;

	RAND_bytes(msg, sizeof(msg));
	if (md == NULL || EVP_DigestSignInit_ex(md, NULL, "SHA256", NULL, NULL, key, NULL) != 1 ||
	    EVP_DigestSign(md, sig, &siglen, msg, sizeof(msg)) != 1)
		goto out;
	EVP_MD_CTX_free(md);
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestVerifyInit_ex(md, NULL, "SHA256", NULL, NULL, pub, NULL) != 1 ||
	    EVP_DigestVerify(md, sig, siglen, msg, sizeof(msg)) != 1) {
		fprintf(stderr, "provider_fleet: a signature did not verify\n");
		goto out;
	}
	ok = true;
out:
	if (!ok && atomic_fetch_add(&printed_errors, 1) < 5)
		ERR_print_errors_fp(stderr);
	ERR_clear_error();
	EVP_MD_CTX_free(md);
	return ok;
}

static void *signer(void *arg)
{
	(void)arg;
	while (!atomic_load(&stop)) {
		uint64_t t0 = now_us();
		bool ok = sign_once();
		uint64_t us = now_us() - t0;
		if (ok) {
			atomic_fetch_add(&ok_n, 1);
			atomic_max(&max_us, us);
		} else {
			atomic_fetch_add(&fail_n, 1);
			atomic_max(&fail_max_us, us);
			usleep(1000); /* an outage without fallback fails fast: don't spin */
		}
	}
	OPENSSL_thread_stop();
	return NULL;
}

static EVP_PKEY *read_key(const char *path, bool priv)
{
	FILE *f = fopen(path, "r");
	EVP_PKEY *k = NULL;
	if (f == NULL) {
		perror(path);
		exit(2);
	}
	k = priv ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : PEM_read_PUBKEY(f, NULL, NULL, NULL);
	fclose(f);
	if (k == NULL) {
		fprintf(stderr, "provider_fleet: cannot read %s\n", path);
		ERR_print_errors_fp(stderr);
		exit(2);
	}
	return k;
}

static void report(const char *label)
{
	unsigned long long ok = atomic_exchange(&ok_n, 0), fail = atomic_exchange(&fail_n, 0);
	unsigned long long mx = atomic_exchange(&max_us, 0), fmx = atomic_exchange(&fail_max_us, 0);
	tot_ok += ok;
	tot_fail += fail;
	tot_max_us = mx > tot_max_us ? mx : tot_max_us;
	tot_fail_max_us = fmx > tot_fail_max_us ? fmx : tot_fail_max_us;
	printf("%s ok %llu fail %llu max_ms %.1f fail_max_ms %.1f\n", label, ok, fail, mx / 1000.0,
	       fmx / 1000.0);
	fflush(stdout);
}

int main(int argc, char **argv)
{
	const char *key_path = NULL, *pub_path = NULL;
	int threads = 4, seconds = 10;
	pthread_t th[MAX_THREADS];

	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
			key_path = argv[++i];
		else if (strcmp(argv[i], "--pub") == 0 && i + 1 < argc)
			pub_path = argv[++i];
		else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
			seconds = atoi(argv[++i]);
		else {
			fprintf(stderr, "usage: provider_fleet --key REF.pem --pub PUB.pem "
			                "[--threads T] [--seconds S]\n");
			return 2;
		}
	}
	if (key_path == NULL || pub_path == NULL || threads < 1 || threads > MAX_THREADS ||
	    seconds < 1)
		return 2;
	if (OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) != 1)
		return 2;
	OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
	OSSL_PROVIDER *kp = OSSL_PROVIDER_load(NULL, "keyway");
	if (kp == NULL || dp == NULL) {
		ERR_print_errors_fp(stderr);
		return 2;
	}
	key = read_key(key_path, true);
	pub = read_key(pub_path, false);

	for (int i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, signer, NULL);
	struct pollfd pf = {.fd = 0, .events = POLLIN};
	uint64_t start = now_us();
	for (int sec = 1; sec <= seconds; sec++) {
		bool quit = false;
		while (now_us() < start + (uint64_t)sec * 1000000u) {
			int left = (int)((start + (uint64_t)sec * 1000000u - now_us()) / 1000u) + 1;
			if (poll(&pf, 1, left) > 0) {
				char line[64];
				if (fgets(line, sizeof(line), stdin) == NULL ||
				    strncmp(line, "quit", 4) == 0) {
					quit = true;
					pf.fd = -1;
				}
			}
		}
		char label[32];
		snprintf(label, sizeof(label), "sec %d", sec);
		report(label);
		if (quit)
			break;
	}
	atomic_store(&stop, true);
	for (int i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	report("last");
	printf("total ok %llu fail %llu max_ms %.1f fail_max_ms %.1f\n", tot_ok, tot_fail,
	       tot_max_us / 1000.0, tot_fail_max_us / 1000.0);
	struct kw_provider_stats st;
	kw_provider_stats(&st);
	printf("stats retries %llu failovers %llu fallbacks %llu\n", (unsigned long long)st.retries,
	       (unsigned long long)st.failovers, (unsigned long long)st.fallbacks);
	fflush(stdout);
	EVP_PKEY_free(key);
	EVP_PKEY_free(pub);
	OSSL_PROVIDER_unload(kp);
	OSSL_PROVIDER_unload(dp);
	return 0;
}
