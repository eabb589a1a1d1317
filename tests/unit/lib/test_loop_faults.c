/*
 * test_loop_faults.c - the loop's test-only fault injection (loop_fault.h):
 * the chosen calls of the armed kind fail with -ENOMEM and leave nothing
 * registered, the others (and other kinds) go through, and disarming stops it.
 */
#include <errno.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "check.h"
#include "keyway/loop.h"
#include "keyway/loop_fault.h"

static void on_timer(struct kw_loop *loop, void *arg)
{
	(*(int *)arg)++;
}

static void on_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	(*(int *)arg)++;
}

static void test_timer_faults(struct kw_loop *loop)
{
	struct kw_timer a, b;
	int fired = 0;
	kw_timer_init(&a, on_timer, &fired);
	kw_timer_init(&b, on_timer, &fired);

	kw_fault_arm(KW_FAULT_TIMER, 2, 2);
	CHECK_EQ(kw_timer_start_ms(loop, &a, 0), 0);
	CHECK_EQ(kw_timer_start_us(loop, &b, 0), -ENOMEM); /* the 2nd... */
	CHECK(!kw_timer_active(&b));
	CHECK_EQ(kw_timer_start_at(loop, &b, 0), -ENOMEM); /* ...and the 3rd fail */
	CHECK_EQ(kw_timer_start_ms(loop, &b, 0), 0);
	CHECK_EQ(kw_fault_calls(), 4);
	CHECK_EQ(kw_fault_fired(), 2);
	CHECK_EQ(kw_loop_run_once(loop, 100), 0);
	CHECK_EQ(fired, 2);

	/* A failed re-arm leaves the timer stopped, as a real allocation failure would. */
	kw_fault_arm(KW_FAULT_TIMER, 1, 1);
	CHECK_EQ(kw_timer_start_ms(loop, &a, 1000), -ENOMEM);
	CHECK(!kw_timer_active(&a));
	kw_fault_disarm();
	CHECK_EQ(kw_timer_start_ms(loop, &a, 1000), 0);
	CHECK_EQ(kw_fault_fired(), 1);
	kw_timer_stop(loop, &a);
}

static void test_io_faults(struct kw_loop *loop)
{
	int efd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC), n = 0;
	struct kw_io io;
	struct kw_timer t;
	int fired = 0;
	CHECK(efd >= 0);
	kw_io_init(&io, on_io, &n);
	kw_timer_init(&t, on_timer, &fired);

	/* Only the armed kind counts: timers go through. */
	kw_fault_arm(KW_FAULT_IO, 1, 1);
	CHECK_EQ(kw_timer_start_ms(loop, &t, 1000), 0);
	CHECK_EQ(kw_io_start(loop, &io, efd, KW_EV_READ), -ENOMEM);
	CHECK_EQ(io.fd, -1);
	CHECK_EQ(kw_io_start(loop, &io, efd, KW_EV_READ), 0);
	CHECK_EQ(kw_loop_run_once(loop, 100), 0);
	CHECK_EQ(n, 1);

	/* kw_io_modify fails only where it would reach epoll: a changed interest set. */
	kw_fault_arm(KW_FAULT_IO, 1, 1);
	CHECK_EQ(kw_io_modify(loop, &io, KW_EV_READ), 0);
	CHECK_EQ(kw_fault_calls(), 0);
	CHECK_EQ(kw_io_modify(loop, &io, KW_EV_READ | KW_EV_WRITE), -ENOMEM);
	CHECK_EQ(io.events, KW_EV_READ);
	CHECK_EQ(kw_io_modify(loop, &io, KW_EV_READ | KW_EV_WRITE), 0);
	kw_io_stop(loop, &io);

	kw_fault_arm(KW_FAULT_IO | KW_FAULT_TIMER, 1, 1);
	CHECK_EQ(kw_io_start_exclusive(loop, &io, efd, KW_EV_READ), -ENOMEM);
	CHECK_EQ(kw_io_start_exclusive(loop, &io, efd, KW_EV_READ), 0);
	kw_fault_disarm();
	kw_io_stop(loop, &io);
	kw_timer_stop(loop, &t);
	close(efd);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	CHECK_EQ(kw_loop_new(&loop), 0);
	if (loop == NULL)
		CHECK_DONE();
	test_timer_faults(loop);
	test_io_faults(loop);
	kw_loop_free(loop);
	CHECK_DONE();
}
