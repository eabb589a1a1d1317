/*
 * quic_bench.c - `keyway quic bench`: packets sealed (and opened) per
 * second through the pool of include/keyway/quic.h, host and crypto-core
 * CPU per packet, and submit->completion latency, closed loop or at a fixed
 * offered rate. Every batch is one connection's run of packets (one GSO
 * buffer); the host writes each packet's header (and with --write-payload
 * its payload) as a stack would. Latency is stamped once per batch, never
 * per packet.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "commands.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/quic.h"

#define EXIT_USAGE 2
#define HDR_LEN 11 /* short header: first byte, 8-byte CID, 2-byte packet number */
#define HIST 1024  /* latency buckets: 16 per power of two */
#define MAX_SECONDS 600

struct bench_opts {
	char *engine, *sched, *cipher;
	unsigned workers, batch, size, conns, seconds, rate, spin_us;
	bool open, json, write_payload;
};

struct slot {
	struct kw_quic_pkt *pkts;
	uint8_t *bufs;
	uint64_t stamp; /* submit time (closed loop) or due time (open loop) */
	struct slot *next;
};

/* One host thread with its own pool: the whole run, or one shard of sharded inline. */
struct shard {
	const struct bench_opts *o;
	int cpu;
	struct kw_quic_pool *pool;
	struct kw_quic_key **keys;
	uint64_t *next_pn;
	unsigned first_conn, nconns, rr, nslots;
	unsigned rate; /* this shard's share of the offered load */
	struct slot *slots, *free, *reopen;
	uint64_t start, done_pkts, errors;
	uint64_t *per_second; /* packets completed in each second of the run */
	uint64_t hist[HIST];
	uint64_t host_ns, core_ns, out_of_order;
	int rc;
};

static uint64_t clock_ns(clockid_t c)
{
	struct timespec ts;
	clock_gettime(c, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned bucket(uint64_t ns)
{
	if (ns < 16)
		return (unsigned)ns;
	unsigned lg = 63 - (unsigned)__builtin_clzll(ns);
	unsigned b = (lg - 3) * 16 + (unsigned)((ns >> (lg - 4)) & 15);
	return b < HIST ? b : HIST - 1;
}

static uint64_t bucket_ns(unsigned b)
{
	if (b < 16)
		return b;
	unsigned lg = b / 16 + 3;
	return (1ull << lg) | ((uint64_t)(b % 16) << (lg - 4));
}

static uint64_t percentile(const uint64_t *hist, double q)
{
	uint64_t total = 0, seen = 0;
	for (unsigned b = 0; b < HIST; b++)
		total += hist[b];
	for (unsigned b = 0; b < HIST; b++)
		if ((seen += hist[b]) > 0 && seen >= q * (double)total)
			return bucket_ns(b);
	return 0;
}

/* prepare writes a batch of one connection's packets into s, as a stack builds them. */
static void prepare(struct shard *sh, struct slot *s)
{
	const struct bench_opts *o = sh->o;
	unsigned conn = sh->rr++ % sh->nconns;
	size_t stride = o->size + KW_QUIC_TAG_LEN;

	for (unsigned i = 0; i < o->batch; i++) {
		uint8_t *b = s->bufs + i * stride;
		uint64_t pn = sh->next_pn[conn]++;
		b[0] = 0x41;
		memset(b + 1, (int)(sh->first_conn + conn), 8);
		b[9] = (uint8_t)(pn >> 8), b[10] = (uint8_t)pn;
		/* The payload is sealed in place again unless the host writes it as a stack would.
		 */
		if (o->write_payload)
			memset(b + HDR_LEN, (int)pn, o->size - HDR_LEN - KW_QUIC_TAG_LEN);
		s->pkts[i] = (struct kw_quic_pkt){.buf = b,
		                                  .len = o->size - KW_QUIC_TAG_LEN,
		                                  .hdr_len = HDR_LEN,
		                                  .pn = pn,
		                                  .key = sh->keys[conn],
		                                  .conn = sh->first_conn + conn,
		                                  .dir = KW_QUIC_DIR_SEAL,
		                                  .user = s};
	}
}

/* reopen turns a sealed batch into one to open (the --open round trip). */
static void reopen(struct slot *s, unsigned n)
{
	for (unsigned i = 0; i < n; i++) {
		struct kw_quic_pkt *p = &s->pkts[i];
		p->len = p->out_len;
		p->pn_offset = 1 + 8;
		p->largest_pn = p->pn ? p->pn - 1 : UINT64_MAX;
		p->key1 = p->key;
		p->dir = KW_QUIC_DIR_OPEN;
	}
}

static void on_done(void *arg, struct kw_quic_pkt *pkts, size_t n)
{
	struct shard *sh = arg;
	struct slot *s = pkts[0].user;
	uint64_t now = clock_ns(CLOCK_MONOTONIC);

	for (size_t i = 0; i < n; i++)
		sh->errors += pkts[i].status != 0;
	if (sh->o->open && pkts[0].dir == KW_QUIC_DIR_SEAL) {
		reopen(s, (unsigned)n);
		s->next = sh->reopen;
		sh->reopen = s;
		return;
	}
	uint64_t sec = (now - sh->start) / 1000000000u;
	if (sec < sh->o->seconds)
		sh->per_second[sec] += n;
	sh->done_pkts += n;
	sh->hist[bucket(now > s->stamp ? now - s->stamp : 0)]++;
	s->next = sh->free;
	sh->free = s;
}

static bool submit(struct shard *sh, struct slot *s)
{
	return kw_quic_pool_submit(sh->pool, s->pkts, sh->o->batch) > 0;
}

/* run_loop is the host thread: submit (closed loop or on schedule), poll, sleep when idle. */
static void run_loop(struct shard *sh)
{
	const struct bench_opts *o = sh->o;
	uint64_t interval = sh->rate ? (uint64_t)o->batch * 1000000000u / sh->rate : 0;
	uint64_t end = sh->start + (uint64_t)o->seconds * 1000000000u, due = sh->start;
	bool inline_sched = strcmp(o->sched, "inline") == 0;

	for (uint64_t now = sh->start; now < end; now = clock_ns(CLOCK_MONOTONIC)) {
		bool busy = false;
		while (sh->reopen != NULL && submit(sh, sh->reopen)) {
			sh->reopen = sh->reopen->next;
			busy = true;
		}
		while (sh->free != NULL && (!sh->rate || now >= due)) {
			struct slot *s = sh->free;
			prepare(sh, s);
			s->stamp = sh->rate ? due : clock_ns(CLOCK_MONOTONIC);
			if (!submit(sh, s))
				break;
			sh->free = s->next;
			due += interval;
			busy = true;
			/* Inline has finished the batch: take it now, so its latency is its own. */
			if (inline_sched) {
				kw_quic_pool_poll(sh->pool);
				break; /* the slot is free again: back to the clock */
			}
		}
		if (kw_quic_pool_poll(sh->pool) > 0 || busy)
			continue;
		if (kw_quic_pool_inflight(sh->pool) > 0) {
			kw_quic_pool_wait(sh->pool, 10);
		} else if (sh->rate && due > now) {
			struct timespec ts = {(time_t)(due / 1000000000u),
			                      (long)(due % 1000000000u)};
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
		}
	}
}

static void *shard_main(void *arg)
{
	struct shard *sh = arg;
	struct kw_quic_pool_stats st0, st1;

	if (sh->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(sh->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	kw_quic_pool_stats(sh->pool, &st0);
	uint64_t cpu0 = clock_ns(CLOCK_THREAD_CPUTIME_ID);
	sh->start = clock_ns(CLOCK_MONOTONIC);
	run_loop(sh);
	sh->host_ns = clock_ns(CLOCK_THREAD_CPUTIME_ID) - cpu0;
	kw_quic_pool_stats(sh->pool, &st1);
	sh->core_ns = st1.core_cpu_ns - st0.core_cpu_ns;
	sh->out_of_order = st1.out_of_order;
	return NULL;
}

/* shard_init makes a shard's keys, slots and pool. Returns 0 or prints why and returns 1. */
static int shard_init(struct shard *sh, const struct bench_opts *o, unsigned first, unsigned nconns,
                      unsigned workers, const int *cpus)
{
	enum kw_quic_cipher c = (enum kw_quic_cipher)kw_quic_cipher_parse(o->cipher);
	size_t stride = o->size + KW_QUIC_TAG_LEN;
	uint8_t secret[KW_QUIC_SECRET_MAX];

	sh->o = o;
	sh->first_conn = first;
	sh->nconns = nconns;
	sh->nslots = 8 + 8 * workers;
	sh->keys = calloc(nconns, sizeof(*sh->keys));
	sh->next_pn = calloc(nconns, sizeof(*sh->next_pn));
	sh->slots = calloc(sh->nslots, sizeof(*sh->slots));
	sh->per_second = calloc(o->seconds, sizeof(*sh->per_second));
	if (!sh->keys || !sh->next_pn || !sh->slots || !sh->per_second)
		return 1;
	for (unsigned i = 0; i < nconns; i++) {
		RAND_bytes(secret, sizeof(secret));
		if (kw_quic_key_new(&sh->keys[i], c, secret, kw_quic_secret_len(c)) < 0)
			return 1;
	}
	for (unsigned i = 0; i < sh->nslots; i++) {
		struct slot *s = &sh->slots[i];
		s->pkts = calloc(o->batch, sizeof(*s->pkts));
		s->bufs = malloc(o->batch * stride);
		if (s->pkts == NULL || s->bufs == NULL)
			return 1;
		s->next = sh->free;
		sh->free = s;
	}
	struct kw_quic_pool_config cfg = {.engine = o->engine,
	                                  .sched =
	                                      (enum kw_quic_sched)kw_quic_sched_parse(o->sched),
	                                  .workers = workers,
	                                  .max_batch = o->batch,
	                                  .cpus = cpus,
	                                  .done = on_done,
	                                  .done_arg = sh,
	                                  .spin_ns = o->spin_us * 1000u};
	int rc = kw_quic_pool_new(&sh->pool, &cfg);
	if (rc < 0) {
		fprintf(stderr, "keyway quic bench: pool: %s\n", kw_strerror(rc));
		return 1;
	}
	return 0;
}

static void shard_free(struct shard *sh)
{
	kw_quic_pool_free(sh->pool);
	for (unsigned i = 0; sh->keys && i < sh->nconns; i++)
		kw_quic_key_unref(sh->keys[i]);
	for (unsigned i = 0; sh->slots && i < sh->nslots; i++) {
		free(sh->slots[i].pkts);
		free(sh->slots[i].bufs);
	}
	free(sh->keys);
	free(sh->next_pn);
	free(sh->slots);
	free(sh->per_second);
}

/* self_check: the engine under test and evp seal a packet identically and it opens. */
static int self_check(const char *engine, const char *cipher)
{
	struct kw_quic_engine *e = NULL, *ref = NULL;
	struct kw_quic_key *k = NULL;
	uint8_t secret[KW_QUIC_SECRET_MAX] = {1}, a[1216], b[1216];
	int c = kw_quic_cipher_parse(cipher), ok = 0;

	if (kw_quic_engine_new(&e, engine) == 0 && kw_quic_engine_new(&ref, "evp") == 0 &&
	    kw_quic_key_new(&k, c, secret, kw_quic_secret_len(c)) == 0) {
		memset(a, 0x5a, sizeof(a));
		a[0] = 0x41, a[9] = 0, a[10] = 9; /* packet number 9 in 2 bytes */
		memcpy(b, a, sizeof(b));
		struct kw_quic_pkt p = {.buf = a,
		                        .len = 1200,
		                        .hdr_len = HDR_LEN,
		                        .pn = 9,
		                        .key = k,
		                        .dir = KW_QUIC_DIR_SEAL};
		struct kw_quic_pkt q = p;
		q.buf = b;
		kw_quic_engine_run(e, &p, 1);
		kw_quic_engine_run(ref, &q, 1);
		struct kw_quic_pkt o = {.buf = a,
		                        .len = 1216,
		                        .pn_offset = 9,
		                        .largest_pn = 8,
		                        .key = k,
		                        .key1 = k,
		                        .dir = KW_QUIC_DIR_OPEN};
		ok = p.status == 0 && memcmp(a, b, sizeof(a)) == 0 &&
		     kw_quic_engine_run(e, &o, 1) == 1;
	}
	kw_quic_key_unref(k);
	kw_quic_engine_free(e);
	kw_quic_engine_free(ref);
	return ok ? 0 : -1;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static void report(const struct bench_opts *o, struct shard *sh, unsigned nshards)
{
	uint64_t per_second[MAX_SECONDS] = {0}, hist[HIST] = {0}, pkts = 0, host = 0, core = 0,
	         ooo = 0;
	for (unsigned i = 0; i < nshards; i++) {
		for (unsigned s = 0; s < o->seconds; s++)
			per_second[s] += sh[i].per_second[s];
		for (unsigned b = 0; b < HIST; b++)
			hist[b] += sh[i].hist[b];
		pkts += sh[i].done_pkts;
		host += sh[i].host_ns;
		core += sh[i].core_ns;
		ooo += sh[i].out_of_order;
	}
	qsort(per_second, o->seconds, sizeof(uint64_t), cmp_u64);
	uint64_t median = per_second[o->seconds / 2];
	double hpp = pkts ? (double)host / (double)pkts : 0;
	double tpp = pkts ? (double)(host + core) / (double)pkts : 0;
	uint64_t p50 = percentile(hist, 0.50), p99 = percentile(hist, 0.99);
	if (o->json) {
		printf("{\"pkts_per_sec\": %llu, \"host_cpu_ns_per_pkt\": %.1f, "
		       "\"total_cpu_ns_per_pkt\": %.1f, \"p50_ns\": %llu, \"p99_ns\": %llu, "
		       "\"out_of_order\": %llu, \"engine\": \"%s\", \"sched\": \"%s\", "
		       "\"batch\": %u, \"size\": %u, \"workers\": %u, \"conns\": %u}\n",
		       (unsigned long long)median, hpp, tpp, (unsigned long long)p50,
		       (unsigned long long)p99, (unsigned long long)ooo, o->engine, o->sched,
		       o->batch, o->size, o->workers, o->conns);
		return;
	}
	printf("%s %s, %s, %u worker(s), batch %u, %u bytes, %u connection(s), %u s%s\n", o->engine,
	       o->sched, o->cipher, o->workers, o->batch, o->size, o->conns, o->seconds,
	       o->open ? ", sealed and opened" : "");
	printf("packets:            %llu\n", (unsigned long long)pkts);
	printf("packets/s:          %llu (median of one-second intervals)\n",
	       (unsigned long long)median);
	printf("host CPU/packet:    %.1f ns\n", hpp);
	printf("cores CPU/packet:   %.1f ns\n", pkts ? (double)core / (double)pkts : 0);
	printf("total CPU/packet:   %.1f ns\n", tpp);
	printf("latency p50/p99:    %llu / %llu ns (submit to completion, per batch)\n",
	       (unsigned long long)p50, (unsigned long long)p99);
	printf("out of order:       %llu (before re-sequencing)\n", (unsigned long long)ooo);
}

static int bench_run(struct bench_opts *o)
{
	bool sharded = strcmp(o->sched, "inline") == 0;
	unsigned nshards = sharded ? o->workers : 1;
	unsigned ncpu = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	int cpus[64];
	struct shard *sh = calloc(nshards, sizeof(*sh));
	int rc = 1;

	if (sh == NULL)
		return 1;
	if (self_check(o->engine, o->cipher) < 0) {
		fprintf(stderr, "keyway quic bench: %s does not match evp or open its own packet\n",
		        o->engine);
		goto out;
	}
	/* The host on CPU 0, crypto cores (or shards) on the next ones. */
	for (unsigned i = 0; i < 64; i++)
		cpus[i] = ncpu > 1 ? (int)((1 + i) % ncpu) : -1;
	for (unsigned i = 0; i < nshards; i++) {
		unsigned first = o->conns * i / nshards, last = o->conns * (i + 1) / nshards;
		sh[i].cpu = ncpu > 1 ? (int)(i % ncpu) : -1;
		sh[i].rate = o->rate / nshards;
		if (shard_init(&sh[i], o, first, last - first, sharded ? 0 : o->workers, cpus)) {
			fprintf(stderr, "keyway quic bench: cannot set up the run\n");
			goto out;
		}
	}
	pthread_t t[64];
	for (unsigned i = 0; i < nshards; i++)
		pthread_create(&t[i], NULL, shard_main, &sh[i]);
	for (unsigned i = 0; i < nshards; i++)
		pthread_join(t[i], NULL);
	uint64_t errors = 0;
	for (unsigned i = 0; i < nshards; i++)
		errors += sh[i].errors;
	if (errors > 0) {
		fprintf(stderr, "keyway quic bench: %llu packet(s) failed\n",
		        (unsigned long long)errors);
		goto out;
	}
	report(o, sh, nshards);
	rc = 0;
out:
	for (unsigned i = 0; i < nshards; i++)
		if (sh[i].o != NULL)
			shard_free(&sh[i]);
	free(sh);
	return rc;
}

int kw_cli_quic_bench(int argc, char **argv)
{
	struct bench_opts o = {.engine = "auto", .sched = "inline", .cipher = "aes-128-gcm"};
	o.workers = 1, o.batch = 1, o.size = 1200, o.conns = 1, o.seconds = 5, o.spin_us = 20;
	struct kw_option opts[] = {
	    KW_OPT_STR("engine", &o.engine, "E", "evp, ipsec-mb or auto"),
	    KW_OPT_STR("sched", &o.sched, "S", "inline (default), sjbsq, hash or jsq"),
	    KW_OPT_NUM("workers", &o.workers, "N",
	               "crypto cores (inline: threads each sealing their own connections)", 1, 64),
	    KW_OPT_NUM("batch", &o.batch, "N", "packets per batch, one connection's", 1, 1024),
	    KW_OPT_NUM("size", &o.size, "BYTES", "protected packet size", 32, 65535),
	    KW_OPT_NUM("conns", &o.conns, "N", "connections, one key each", 1, 1000000),
	    KW_OPT_NUM("seconds", &o.seconds, "S", "run length", 1, MAX_SECONDS),
	    KW_OPT_NUM("rate", &o.rate, "PPS", "offered load (default: closed loop)", 0, 0),
	    KW_OPT_FLAG("open", &o.open, "open every sealed packet too"),
	    KW_OPT_FLAG("json", &o.json, "print one JSON object"),
	    KW_OPT_NUM("spin-us", &o.spin_us, "US",
	               "how long an idle crypto core polls before it sleeps (default 20)", 0,
	               1000000),
	    KW_OPT_FLAG("write-payload", &o.write_payload,
	                "the host writes every payload before sealing, as a stack does"),
	    KW_OPT_STR("cipher", &o.cipher, "C",
	               "aes-128-gcm (default), aes-256-gcm, chacha20-poly1305"),
	    KW_OPT_END,
	};
	char err[512];
	int npos = 0;
	int rc = kw_config_parse(opts, argc, argv,
	                         "usage: keyway quic bench --engine evp|ipsec-mb --sched "
	                         "inline|sjbsq|hash|jsq [--workers N] [--batch N] [--size BYTES] "
	                         "[--conns N] [--seconds S] [--rate PPS] [--open] [--json]\n\n"
	                         "Measure QUIC packet protection through the crypto-core pool.",
	                         NULL, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "keyway quic bench: %s\n", err);
		return EXIT_USAGE;
	}
	rc = EXIT_USAGE;
	if (kw_quic_sched_parse(o.sched) < 0)
		fprintf(stderr, "keyway quic bench: --sched: inline, sjbsq, hash or jsq\n");
	else if (kw_quic_cipher_parse(o.cipher) < 0)
		fprintf(stderr, "keyway quic bench: --cipher: aes-128-gcm, aes-256-gcm or "
		                "chacha20-poly1305\n");
	else if (!kw_quic_engine_available(o.engine))
		fprintf(stderr, "keyway quic bench: --engine %s: not available here\n", o.engine);
	else if (o.conns < (strcmp(o.sched, "inline") == 0 ? o.workers : 1))
		fprintf(stderr,
		        "keyway quic bench: sharded inline needs a connection per worker\n");
	else
		rc = bench_run(&o);
	kw_config_free(opts);
	return rc;
}
