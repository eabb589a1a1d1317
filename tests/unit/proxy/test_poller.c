/*
 * test_poller.c - when the poller reaps: the QTLS heuristic's timeliness
 * and threshold polls and its failover timer (on a scripted backend), and
 * the wake-up, busy and timer modes on a real threads backend with real
 * signing ops; freed capacity is reported only when a poll reaped
 * something.
 */
#include <stdlib.h>

#include <openssl/evp.h>

#include "check.h"
#include "fake_backend.h"
#include "keyway/backend.h"
#include "keyway/loop.h"
#include "keyway/offload.h"
#include "poller.h"

static int freed_calls;

static void on_freed(void *arg)
{
	CHECK(arg == &freed_calls);
	freed_calls++;
}

static void test_without_backend(struct kw_loop *loop)
{
	struct kpx_poller p;
	struct kpx_wmetrics m = {0};

	kpx_poller_init(&p, loop, KPX_POLL_HEURISTIC, 1000, 48, &m, on_freed, &freed_calls);
	CHECK_EQ(kpx_poller_poll(&p, KPX_TRIG_BUSY), 0);
	CHECK_EQ(m.polls[KPX_TRIG_BUSY], 0); /* nothing to poll is no poll */
	CHECK_EQ(kpx_poller_before_sleep(&p), -1);
	kpx_poller_check(&p, 1);
	kpx_poller_cleanup(&p); /* safe without a start */
	CHECK(!kw_timer_active(&p.timer) && !p.timer_running);
}

/* The heuristic on the scripted backend (bound as a ring backend by hand: it has no
 * eventfd to register). */
static void test_heuristic(struct kw_loop *loop)
{
	struct fake_backend f = {.base = {&fake_backend_ops}};
	struct kpx_poller p;
	struct kpx_wmetrics m = {0};

	freed_calls = 0;
	kpx_poller_init(&p, loop, KPX_POLL_HEURISTIC, 1000, 4, &m, on_freed, &freed_calls);
	p.backend = &f.base;
	p.ring = true;

	/* Nothing in flight: no poll, no timer. */
	kpx_poller_check(&p, 1);
	CHECK_EQ(f.polls, 0);
	CHECK(!kw_timer_active(&p.failover));

	/* 2 in flight, 3 active, threshold 4: neither rule; the failover timer is the net. */
	f.inflight = 2;
	kpx_poller_check(&p, 3);
	CHECK_EQ(f.polls, 0);
	CHECK(kw_timer_active(&p.failover));

	/* Timeliness: every active connection waits. A poll reaping nothing frees nothing. */
	kpx_poller_check(&p, 2);
	CHECK_EQ(m.polls[KPX_TRIG_TIMELINESS], 1);
	CHECK_EQ(freed_calls, 0);
	CHECK_EQ(p.heuristic_polls, 1);

	/* Threshold: 4 in flight among 10 active; both reaped, capacity reported once. */
	f.inflight = 4;
	f.completes = 4;
	kpx_poller_check(&p, 10);
	CHECK_EQ(m.polls[KPX_TRIG_THRESHOLD], 1);
	CHECK_EQ(m.polled_ops, 4);
	CHECK_EQ(freed_calls, 1);

	/* The failover timer polls when no heuristic poll happened in its interval. */
	f.inflight = 1;
	f.completes = 1;
	p.heuristic_polls = 0;
	kw_timer_start_us(loop, &p.failover, 1);
	for (int i = 0; i < 100 && m.polls[KPX_TRIG_TIMER] == 0; i++)
		kw_loop_run_once(loop, 5);
	CHECK_EQ(m.polls[KPX_TRIG_TIMER], 1);
	CHECK_EQ(f.inflight, 0);
	CHECK(!kw_timer_active(&p.failover)); /* nothing left in flight: not re-armed */

	/* Another mode or a backend without rings: the heuristic never polls. */
	int before = f.polls;
	f.inflight = 8;
	p.mode = KPX_POLL_BUSY;
	kpx_poller_check(&p, 1);
	p.mode = KPX_POLL_HEURISTIC;
	p.ring = false;
	kpx_poller_check(&p, 1);
	CHECK_EQ(f.polls, before);
	/* before_sleep refreshes the gauges even then. */
	CHECK_EQ(kpx_poller_before_sleep(&p), -1);
	CHECK_EQ(m.inflight[KW_OPK_ASYM], 8);
	kpx_poller_cleanup(&p);
}

/* ---- real ops on a threads backend ---- */

static EVP_PKEY *key;
static const uint8_t digest[32] = {1};
static struct kw_op ops[3]; /* not heap: no release; each lives until the test ends */

/* submit signs digest with key on b; only the poller's reaping completes it. */
static void submit(struct kw_backend *b, struct kw_op *op)
{
	kw_op_init(op, KW_OPK_ASYM, KW_OP_ECDSA_SIGN_SHA256);
	op->pkey = key;
	op->in = digest;
	op->in_len = sizeof(digest);
	CHECK_EQ(kw_backend_submit(b, op), 0);
	kw_op_unref(op);
}

/* run turns the loop as a worker does until want ops were reaped (or 2 s passed). */
static void run(struct kw_loop *loop, struct kpx_poller *p, int want)
{
	/* Bounded by time: busy mode turns the loop without ever sleeping. */
	uint64_t deadline = kw_now_ns() + 2000000000ull;
	while (p->m->polled_ops < (uint64_t)want && kw_now_ns() < deadline) {
		int timeout = kpx_poller_before_sleep(p);
		kw_loop_run_once(loop, timeout < 0 || timeout > 1 ? 1 : timeout);
		kpx_poller_after_wake(p);
	}
}

static void test_mode(struct kw_loop *loop, enum kpx_poll mode, enum kpx_trigger trig)
{
	struct kw_backend *b = NULL;
	struct kpx_poller p;
	struct kpx_wmetrics m = {0};

	CHECK_EQ(kw_backend_threads_new(&b, 1, 8), 0);
	freed_calls = 0;
	kpx_poller_init(&p, loop, mode, 200, 48, &m, on_freed, &freed_calls);
	CHECK_EQ(kpx_poller_start(&p, b, true), 0);
	CHECK(p.timer.precise); /* sub-millisecond periods need the loop's precise timer */
	CHECK(!kw_timer_active(&p.timer));
	for (int i = 0; i < 3; i++)
		submit(b, &ops[i]);
	run(loop, &p, 3);
	CHECK_EQ(m.polled_ops, 3);
	for (int i = 0; i < 3; i++)
		CHECK(kw_op_is_done(&ops[i]) && ops[i].status == 0);
	CHECK(m.polls[trig] >= 1);
	CHECK(freed_calls >= 1);
	CHECK(!p.armed); /* after_wake disarmed */
	/* Nothing in flight: sleep without a deadline; the timer stops ticking. */
	CHECK_EQ(kpx_poller_before_sleep(&p), -1);
	if (mode == KPX_POLL_TIMER) {
		for (int i = 0; i < 10 && p.timer_running; i++)
			kw_loop_run_once(loop, 1);
		CHECK(!p.timer_running);
	}
	kpx_poller_cleanup(&p);
	CHECK(!kw_timer_active(&p.timer) && !p.timer_running);
	kw_backend_free(b);
}

int main(void)
{
	struct kw_loop *loop = NULL;

	CHECK_EQ(kw_loop_new(&loop), 0);
	key = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(key != NULL);
	test_without_backend(loop);
	test_heuristic(loop);
	test_mode(loop, KPX_POLL_HEURISTIC, KPX_TRIG_WAKEUP);
	test_mode(loop, KPX_POLL_BUSY, KPX_TRIG_BUSY);
	test_mode(loop, KPX_POLL_TIMER, KPX_TRIG_TIMER);
	EVP_PKEY_free(key);
	kw_loop_free(loop);
	CHECK_DONE();
}
