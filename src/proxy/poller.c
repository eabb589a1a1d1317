/*
 * poller.c - when a worker reaps its ring backend's completions.
 *
 * heuristic (QTLS, defaults as asynch_mode_nginx): after each submitted op
 * and whenever a connection goes idle or closes, poll if the ops in flight
 * reach --poll-threshold (efficiency: reap a batch) or are at least the
 * active connections (timeliness: every active connection is waiting, so
 * nothing else can make progress). A 1 ms failover timer polls if no
 * heuristic poll happened in its interval. About to sleep with ops in
 * flight, the worker arms the backend's eventfd, so a completion wakes it.
 * timer: poll every --poll-interval-us while ops are in flight (a timerfd,
 * for sub-millisecond periods). busy: poll every loop turn and never sleep
 * while ops are in flight.
 * Backends without a ring (inline; keyless, which answers through sockets in
 * the loop) need none of this.
 */
#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "keyway/backend.h"
#include "proxy.h"

#define POLL_MAX 4096
#define FAILOVER_US 1000

static void flush_capacity_waiters(struct kpx_worker *w)
{
	/* Slots came free: every connection refused for lack of one may retry. */
	while (!kpx_list_empty(&w->cap_wait)) {
		struct kpx_conn *c =
		    (struct kpx_conn *)((char *)w->cap_wait.next - offsetof(struct kpx_conn, wait));
		kpx_wait_on(c, KPX_WAIT_ASYNCQ);
	}
}

int kpx_poll_now(struct kpx_worker *w, enum kpx_trigger why)
{
	if (w->backend == NULL)
		return 0;
	int n = kw_backend_poll(w->backend, POLL_MAX);
	kpx_add(&w->m.polls[why], 1);
	if (n > 0)
		kpx_add(&w->m.polled_ops, (uint64_t)n);
	if (why == KPX_TRIG_THRESHOLD || why == KPX_TRIG_TIMELINESS)
		w->heuristic_polls++;
	if (n > 0)
		flush_capacity_waiters(w);
	return n;
}

static unsigned inflight(struct kpx_worker *w)
{
	return w->backend != NULL ? kw_backend_inflight_all(w->backend) : 0;
}

static void failover(struct kw_loop *loop, void *arg)
{
	struct kpx_worker *w = arg;
	if (w->heuristic_polls == 0 && inflight(w) > 0)
		kpx_poll_now(w, KPX_TRIG_TIMER);
	w->heuristic_polls = 0;
	if (inflight(w) > 0)
		kw_timer_start_us(loop, &w->failover, FAILOVER_US);
}

void kpx_poller_check(struct kpx_worker *w)
{
	if (!w->ring_backend || w->opt->poll != KPX_POLL_HEURISTIC)
		return;
	unsigned n = inflight(w);
	if (n == 0)
		return;
	if (n >= w->active)
		kpx_poll_now(w, KPX_TRIG_TIMELINESS);
	else if (n >= w->opt->poll_threshold)
		kpx_poll_now(w, KPX_TRIG_THRESHOLD);
	if (inflight(w) > 0 && !kw_timer_active(&w->failover)) {
		w->heuristic_polls = 0;
		kw_timer_start_us(w->loop, &w->failover, FAILOVER_US);
	}
}

static void on_wake(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_worker *w = arg;
	kw_backend_drain_wake_fd(w->backend);
	kpx_poll_now(w, KPX_TRIG_WAKEUP);
}

static void timer_set(struct kpx_worker *w, bool on)
{
	unsigned us = w->opt->poll_interval_us;
	struct itimerspec its = {0};
	if (on) {
		its.it_value.tv_sec = us / 1000000u;
		its.it_value.tv_nsec = (long)(us % 1000000u) * 1000;
		its.it_interval = its.it_value;
	}
	timerfd_settime(w->timerfd, 0, &its, NULL);
	w->timer_running = on;
}

static void on_timer(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_worker *w = arg;
	uint64_t ticks;
	ssize_t r = read(fd, &ticks, sizeof(ticks));
	(void)r;
	if (inflight(w) > 0)
		kpx_poll_now(w, KPX_TRIG_TIMER);
	if (inflight(w) == 0)
		timer_set(w, false);
}

int kpx_poller_init(struct kpx_worker *w)
{
	int rc;
	kw_timer_init(&w->failover, failover, w);
	kw_io_init(&w->wake_io, on_wake, w);
	kw_io_init(&w->timer_io, on_timer, w);
	if (!w->ring_backend)
		return 0;
	if ((rc = kw_io_start(w->loop, &w->wake_io, kw_backend_wake_fd(w->backend), KW_EV_READ)) <
	    0)
		return rc;
	if (w->opt->poll == KPX_POLL_TIMER) {
		w->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (w->timerfd < 0)
			return -errno;
		if ((rc = kw_io_start(w->loop, &w->timer_io, w->timerfd, KW_EV_READ)) < 0)
			return rc;
	}
	return 0;
}

void kpx_poller_cleanup(struct kpx_worker *w)
{
	kw_timer_stop(w->loop, &w->failover);
	kw_io_stop(w->loop, &w->wake_io);
	kw_io_stop(w->loop, &w->timer_io);
	if (w->timerfd >= 0)
		close(w->timerfd);
	w->timerfd = -1;
}

int kpx_poller_before_sleep(struct kpx_worker *w)
{
	if (w->backend == NULL)
		return -1;
	for (int k = 0; k < KW_OPK_COUNT; k++)
		kpx_set(&w->m.inflight[k], kw_backend_inflight(w->backend, (enum kw_op_kind)k));
	if (!w->ring_backend)
		return -1;
	unsigned n = inflight(w);
	switch (w->opt->poll) {
	case KPX_POLL_BUSY:
		if (n == 0)
			return -1;
		kpx_poll_now(w, KPX_TRIG_BUSY);
		return 0;
	case KPX_POLL_TIMER:
		if (n > 0 && !w->timer_running)
			timer_set(w, true);
		return -1;
	default:
		if (n == 0)
			return -1;
		if (!kw_backend_arm(w->backend)) {
			/* Completions arrived while the turn ran: reap instead of sleeping. */
			kpx_poll_now(w, KPX_TRIG_WAKEUP);
			return 0;
		}
		w->armed = true;
		return -1;
	}
}

void kpx_poller_after_wake(struct kpx_worker *w)
{
	if (w->armed) {
		kw_backend_disarm(w->backend);
		w->armed = false;
	}
}
