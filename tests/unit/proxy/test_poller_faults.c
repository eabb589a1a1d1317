/*
 * test_poller_faults.c - the poller's timer mode when the loop refuses its
 * timer (issue 12, item 12; keyway/loop_fault.h): with ops in flight and no
 * timer it reaps at once and keeps the loop from sleeping, and it starts
 * the timer again at the next turn, whether the first start or a re-arm
 * was refused. Without that, completions would never be reaped and every
 * handshake waiting on them would hang.
 */
#include <errno.h>

#include "check.h"
#include "keyway/backend.h"
#include "keyway/loop.h"
#include "keyway/loop_fault.h"
#include "poller.h"

/* ---- a scripted backend: inflight and poll results set by the test ---- */

struct fake {
	struct kw_backend base;
	unsigned inflight;  /* ops in flight (all of kind ASYM) */
	unsigned completes; /* what the next poll reaps */
	int polls;
};

static int fake_submit(struct kw_backend *b, struct kw_op *op)
{
	return -EINVAL;
}

static int fake_poll(struct kw_backend *b, unsigned max)
{
	struct fake *f = (struct fake *)b;
	unsigned n = f->completes < max ? f->completes : max;
	f->polls++;
	f->completes -= n;
	f->inflight -= n;
	return (int)n;
}

static unsigned fake_inflight(const struct kw_backend *b, enum kw_op_kind kind)
{
	const struct fake *f = (const struct fake *)b;
	return kind == KW_OPK_ASYM ? f->inflight : 0;
}

static void fake_free(struct kw_backend *b)
{
}

static const struct kw_backend_ops fake_ops = {
    .name = "fake",
    .submit = fake_submit,
    .poll = fake_poll,
    .inflight = fake_inflight,
    .free = fake_free,
};

static void test_timer_refused(struct kw_loop *loop)
{
	struct fake f = {.base = {&fake_ops}, .inflight = 1};
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
