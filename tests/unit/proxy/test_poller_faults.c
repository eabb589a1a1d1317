/*
 * test_poller_faults.c - the poller's timer mode when the loop refuses its
 * timer (issue 12, item 12; keyway/loop_fault.h): with ops in flight and no
 * timer it reaps at once and keeps the loop from sleeping, and it starts
 * the timer again at the next turn, whether the first start or a re-arm
 * was refused. Without that, completions would never be reaped and every
 * handshake waiting on them would hang.
 */
#include "check.h"
#include "fake_backend.h"
#include "keyway/backend.h"
#include "keyway/loop.h"
#include "keyway/loop_fault.h"
#include "poller.h"

static void test_timer_refused(struct kw_loop *loop)
{
	struct fake_backend f = {.base = {&fake_backend_ops}, .inflight = 1};
	struct kpx_poller p;
	struct kpx_wmetrics m = {0};

	kpx_poller_init(&p, loop, KPX_POLL_TIMER, 1000, 48, &m, NULL, NULL);
	p.backend = &f.base; /* bound as a ring backend by hand: it has no eventfd */
	p.ring = true;

	/* The first start is refused: reap now, do not sleep. */
	kw_fault_arm(KW_FAULT_TIMER, 1, 1);
	CHECK_EQ(kpx_poller_before_sleep(&p), 0);
	CHECK_EQ(kw_fault_fired(), 1);
	CHECK_EQ(f.polls, 1);
	CHECK(!p.timer_running && !kw_timer_active(&p.timer));
	/* The next turn starts it. */
	CHECK_EQ(kpx_poller_before_sleep(&p), -1);
	CHECK(p.timer_running && kw_timer_active(&p.timer));

	/* Its re-arm after a poll is refused: the next turn starts it afresh. */
	kw_fault_arm(KW_FAULT_TIMER, 1, 1);
	for (int i = 0; i < 100 && f.polls < 2; i++)
		kw_loop_run_once(loop, 5);
	CHECK_EQ(f.polls, 2);
	CHECK_EQ(kw_fault_fired(), 1);
	kw_fault_disarm();
	CHECK(!p.timer_running && !kw_timer_active(&p.timer));
	CHECK_EQ(kpx_poller_before_sleep(&p), -1);
	CHECK(p.timer_running && kw_timer_active(&p.timer));

	/* And it reaps the completion when it comes. */
	f.completes = 1;
	for (int i = 0; i < 100 && f.inflight > 0; i++)
		kw_loop_run_once(loop, 5);
	CHECK_EQ(f.inflight, 0);
	kpx_poller_cleanup(&p);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	CHECK_EQ(kw_loop_new(&loop), 0);
	if (loop == NULL)
		CHECK_DONE();
	test_timer_refused(loop);
	kw_loop_free(loop);
	CHECK_DONE();
}
