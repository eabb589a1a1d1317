/*
 * test_pool.c - the crypto cores: every policy completes every packet
 * exactly once, byte-identical to a direct seal, in each connection's
 * order; full rings answer "full" and wake the owner; stopped cores and a
 * teardown mid-batch cancel what they did not run; a key released while
 * its packets are queued stays alive until they complete (ASan checks).
 */
#include <errno.h>
#include <poll.h>

#include "check.h"
#include "quic_test.h"

#include "keyway/err.h"

#define CONNS 16
#define PER_CONN 40
#define TOTAL (CONNS * PER_CONN)
#define LEN 200

static uint8_t bufs[TOTAL][LEN + 16], want[TOTAL][LEN + 16];
static struct kw_quic_pkt pkts[TOTAL];
static int completions[TOTAL];
static uint64_t last_pn[CONNS];
static int order_errors, done_calls, canceled;

static void on_done(void *arg, struct kw_quic_pkt *p, size_t n)
{
	done_calls++;
	for (size_t i = 0; i < n; i++) {
		size_t idx = (size_t)(p + i - pkts);
		completions[idx]++;
		if (p[i].status == -KW_ECANCELED)
			canceled++;
		/* Per connection, packet numbers complete in submission order. */
		if (last_pn[p[i].conn] != UINT64_MAX && p[i].pn <= last_pn[p[i].conn])
			order_errors++;
		last_pn[p[i].conn] = p[i].pn;
	}
}

/* fill makes TOTAL packets, interleaving connections, with reference seals in want. */
static void fill(struct kw_quic_key *k, struct kw_quic_engine *ref)
{
	for (int i = 0; i < TOTAL; i++) {
		int conn = i % CONNS;
		memset(bufs[i], i, LEN);
		bufs[i][0] = 0x41;
		pkts[i] = (struct kw_quic_pkt){.buf = bufs[i],
		                               .len = LEN,
		                               .hdr_len = 11,
		                               .pn = (uint64_t)i,
		                               .key = k,
		                               .conn = (uint64_t)conn,
		                               .dir = KW_QUIC_DIR_SEAL};
		memcpy(want[i], bufs[i], LEN);
		struct kw_quic_pkt r = pkts[i];
		r.buf = want[i];
		kw_quic_engine_run(ref, &r, 1);
		completions[i] = 0;
	}
	for (int c = 0; c < CONNS; c++)
		last_pn[c] = UINT64_MAX;
	order_errors = done_calls = canceled = 0;
}

/* submit_all feeds everything in batches of batch packets, polling and waiting when full. */
static void submit_all(struct kw_quic_pool *p, size_t batch)
{
	size_t off = 0;
	while (off < TOTAL) {
		size_t n = TOTAL - off < batch ? TOTAL - off : batch;
		int rc = kw_quic_pool_submit(p, pkts + off, n);
		if (rc > 0) {
			off += (size_t)rc;
			continue;
		}
		CHECK_EQ(rc, -EAGAIN);
		if (kw_quic_pool_poll(p) == 0)
			kw_quic_pool_wait(p, 1000);
	}
	while (kw_quic_pool_inflight(p) > 0)
		if (kw_quic_pool_poll(p) == 0)
			kw_quic_pool_wait(p, 1000);
}

static void check_all_sealed(void)
{
	int bad = 0;
	for (int i = 0; i < TOTAL; i++)
		bad += completions[i] != 1 || pkts[i].status != 0 ||
		       memcmp(bufs[i], want[i], LEN + 16) != 0;
	CHECK_EQ(bad, 0);
	CHECK_EQ(order_errors, 0);
}

static struct kw_quic_pool *pool(enum kw_quic_sched s, unsigned workers, unsigned ring,
                                 unsigned bound)
{
	struct kw_quic_pool *p;
	struct kw_quic_pool_config cfg = {.engine = "evp",
	                                  .sched = s,
	                                  .workers = workers,
	                                  .ring = ring,
	                                  .bound = bound,
	                                  .max_batch = 8,
	                                  .done = on_done};
	CHECK_EQ(kw_quic_pool_new(&p, &cfg), 0);
	return p;
}

static void test_policies(struct kw_quic_key *k, struct kw_quic_engine *ref)
{
	for (int s = 0; s < KW_QUIC_SCHED_COUNT; s++)
		for (unsigned w = 1; w <= 3; w++) {
			struct kw_quic_pool_stats st;
			struct kw_quic_pool *p = pool(s, w, 16, 4);
			fill(k, ref);
			submit_all(p, 1 + w * 7);
			check_all_sealed();
			kw_quic_pool_stats(p, &st);
			CHECK(st.submitted == TOTAL && st.completed == TOTAL && st.canceled == 0);
			printf(
			    "%s x%u: %llu jobs, %llu full, %llu out of order, %llu/%llu wake-ups\n",
			    kw_quic_sched_name(s), w, (unsigned long long)st.jobs,
			    (unsigned long long)st.full, (unsigned long long)st.out_of_order,
			    (unsigned long long)st.host_wakeups,
			    (unsigned long long)st.core_wakeups);
			kw_quic_pool_free(p);
			if (s == KW_QUIC_SCHED_INLINE)
				break;
		}
}

/* test_full: with cores paused, sjbsq(4) on 2 cores takes 8 jobs, then answers full. */
static void test_full(struct kw_quic_key *k, struct kw_quic_engine *ref)
{
	struct kw_quic_pool *p = pool(KW_QUIC_SCHED_SJBSQ, 2, 16, 4);
	struct kw_quic_pool_stats st;
	struct pollfd pfd = {.fd = kw_quic_pool_fd(p), .events = POLLIN};

	fill(k, ref);
	kw_quic_pool_pause(p, true);
	size_t off = 0;
	for (int rc; (rc = kw_quic_pool_submit(p, pkts + off, 1)) > 0;)
		off += (size_t)rc;
	CHECK_EQ(off, 8);
	CHECK_EQ(kw_quic_pool_submit(p, pkts + off, 1), -EAGAIN);
	CHECK_EQ(kw_quic_pool_poll(p), 0);
	CHECK_EQ(kw_quic_pool_arm(p), 0);
	CHECK_EQ(kw_quic_pool_wait(p, 50), 0); /* nothing runs while paused */
	CHECK_EQ(poll(&pfd, 1, 0), 0);
	kw_quic_pool_stats(p, &st);
	CHECK(st.full == 2 && st.completed == 0);
	kw_quic_pool_pause(p, false);
	CHECK_EQ(poll(&pfd, 1, 5000), 1); /* the wake-up, not a spin */
	while (kw_quic_pool_inflight(p) > 0)
		if (kw_quic_pool_poll(p) == 0)
			kw_quic_pool_wait(p, 1000);
	kw_quic_pool_stats(p, &st);
	CHECK(st.completed == 8 && st.host_wakeups >= 1);

	/* hash is bounded by its ring only: 16 jobs of connection 0 fit, the 17th does not. */
	struct kw_quic_pool *h = pool(KW_QUIC_SCHED_HASH, 2, 16, 4);
	kw_quic_pool_pause(h, true);
	for (int i = 0; i < 16; i++)
		CHECK_EQ(kw_quic_pool_submit(h, pkts + i * CONNS, 1), 1);
	CHECK_EQ(kw_quic_pool_submit(h, pkts + 16 * CONNS, 1), -EAGAIN);
	kw_quic_pool_pause(h, false);
	kw_quic_pool_free(h); /* completes or cancels all 16 */
	kw_quic_pool_free(p);
}

/* test_stopped: cores stopped with work queued cancel it, exactly once, in order. */
static void test_stopped(struct kw_quic_key *k, struct kw_quic_engine *ref)
{
	struct kw_quic_pool *p = pool(KW_QUIC_SCHED_JSQ, 3, 64, 4);

	fill(k, ref);
	kw_quic_pool_pause(p, true);
	size_t off = 0;
	for (int rc; off < TOTAL && (rc = kw_quic_pool_submit(p, pkts + off, 5)) > 0;)
		off += (size_t)rc;
	CHECK(off > 0);
	kw_quic_pool_free(p);
	int once = 0;
	for (size_t i = 0; i < off; i++)
		once += completions[i] == 1 && pkts[i].status == -KW_ECANCELED;
	CHECK_EQ(once, off);
	CHECK_EQ(canceled, off);
	CHECK_EQ(order_errors, 0);
}

/* test_teardown: freeing mid-batch completes everything once, run or canceled. */
static void test_teardown(struct kw_quic_key *k, struct kw_quic_engine *ref)
{
	for (int round = 0; round < 20; round++) {
		struct kw_quic_pool *p =
		    pool(round % 2 ? KW_QUIC_SCHED_JSQ : KW_QUIC_SCHED_SJBSQ, 2, 32, 4);
		fill(k, ref);
		size_t off = 0;
		for (int rc; off < TOTAL && (rc = kw_quic_pool_submit(p, pkts + off, 16)) > 0;)
			off += (size_t)rc;
		kw_quic_pool_free(p);
		int bad = 0;
		for (size_t i = 0; i < TOTAL; i++) {
			bool sent = i < off;
			bad += completions[i] != (sent ? 1 : 0);
			if (sent && pkts[i].status == 0)
				bad += memcmp(bufs[i], want[i], LEN + 16) != 0;
			else if (sent)
				bad += pkts[i].status != -KW_ECANCELED;
		}
		CHECK_EQ(bad, 0);
		CHECK_EQ(order_errors, 0);
	}
}

/* test_key_release: the caller drops its key while packets under it are queued. */
static void test_key_release(struct kw_quic_engine *ref)
{
	uint8_t secret[32] = {7};
	struct kw_quic_key *k, *same;
	struct kw_quic_pool *p = pool(KW_QUIC_SCHED_SJBSQ, 2, 64, 64);

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	CHECK_EQ(kw_quic_key_new(&same, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	fill(same, ref);
	for (int i = 0; i < TOTAL; i++)
		pkts[i].key = k;
	kw_quic_pool_pause(p, true);
	size_t off = 0;
	for (int rc; off < TOTAL && (rc = kw_quic_pool_submit(p, pkts + off, 8)) > 0;)
		off += (size_t)rc;
	kw_quic_key_unref(k); /* queued jobs hold it now */
	kw_quic_pool_pause(p, false);
	while (kw_quic_pool_inflight(p) > 0)
		if (kw_quic_pool_poll(p) == 0)
			kw_quic_pool_wait(p, 1000);
	int bad = 0;
	for (size_t i = 0; i < off; i++)
		bad += completions[i] != 1 || pkts[i].status != 0 ||
		       memcmp(bufs[i], want[i], LEN + 16) != 0;
	CHECK_EQ(bad, 0);
	kw_quic_pool_free(p);
	kw_quic_key_unref(same);
}

int main(void)
{
	uint8_t secret[32] = {5};
	struct kw_quic_key *k;
	struct kw_quic_engine *ref;
	struct kw_quic_pool *p;
	struct kw_quic_pool_config bad = {.sched = KW_QUIC_SCHED_SJBSQ, .ring = 3, .done = on_done};

	CHECK_EQ(kw_quic_pool_new(&p, &bad), -EINVAL);
	bad.ring = 0, bad.done = NULL;
	CHECK_EQ(kw_quic_pool_new(&p, &bad), -EINVAL);
	CHECK_EQ(kw_quic_sched_parse("sjbsq"), KW_QUIC_SCHED_SJBSQ);
	CHECK_EQ(kw_quic_sched_parse("x"), -EINVAL);
	CHECK_EQ(kw_quic_engine_new(&ref, "evp"), 0);
	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	test_policies(k, ref);
	test_full(k, ref);
	test_stopped(k, ref);
	test_teardown(k, ref);
	test_key_release(ref);
	kw_quic_key_unref(k);
	kw_quic_engine_free(ref);
	CHECK_DONE();
}
