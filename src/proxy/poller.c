/* poller.c - when a worker reaps its ring backend's completions (see poller.h). */
#include "poller.h"

#include <errno.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define POLL_MAX 4096
#define FAILOVER_US 1000

int kpx_poller_poll(struct kpx_poller *p, enum kpx_trigger why)
{
	if (p->backend == NULL)
		return 0;
	int n = kw_backend_poll(p->backend, POLL_MAX);
	kpx_add(&p->m->polls[why], 1);
	if (n > 0)
		kpx_add(&p->m->polled_ops, (uint64_t)n);
	if (why == KPX_TRIG_THRESHOLD || why == KPX_TRIG_TIMELINESS)
		p->heuristic_polls++;
	if (n > 0 && p->freed != NULL)
		p->freed(p->freed_arg);
	return n;
}

static unsigned inflight(struct kpx_poller *p)
{
	return p->backend != NULL ? kw_backend_inflight_all(p->backend) : 0;
}

static void failover(struct kw_loop *loop, void *arg)
{
	struct kpx_poller *p = arg;
	if (p->heuristic_polls == 0 && inflight(p) > 0)
		kpx_poller_poll(p, KPX_TRIG_TIMER);
	p->heuristic_polls = 0;
	if (inflight(p) > 0)
		kw_timer_start_us(loop, &p->failover, FAILOVER_US);
}

void kpx_poller_check(struct kpx_poller *p, unsigned active)
{
	if (!p->ring || p->mode != KPX_POLL_HEURISTIC)
		return;
	unsigned n = inflight(p);
	if (n == 0)
		return;
	if (n >= active)
		kpx_poller_poll(p, KPX_TRIG_TIMELINESS);
	else if (n >= p->threshold)
		kpx_poller_poll(p, KPX_TRIG_THRESHOLD);
	if (inflight(p) > 0 && !kw_timer_active(&p->failover)) {
		p->heuristic_polls = 0;
		kw_timer_start_us(p->loop, &p->failover, FAILOVER_US);
	}
}

static void on_wake(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_poller *p = arg;
	kw_backend_drain_wake_fd(p->backend);
	kpx_poller_poll(p, KPX_TRIG_WAKEUP);
}

static void timer_set(struct kpx_poller *p, bool on)
{
	unsigned us = p->interval_us;
	struct itimerspec its = {0};
	if (on) {
		its.it_value.tv_sec = us / 1000000u;
		its.it_value.tv_nsec = (long)(us % 1000000u) * 1000;
		its.it_interval = its.it_value;
	}
	timerfd_settime(p->timerfd, 0, &its, NULL);
	p->timer_running = on;
}

static void on_timer(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kpx_poller *p = arg;
	uint64_t ticks;
	ssize_t r = read(fd, &ticks, sizeof(ticks));
	(void)r;
	if (inflight(p) > 0)
		kpx_poller_poll(p, KPX_TRIG_TIMER);
	if (inflight(p) == 0)
		timer_set(p, false);
}

void kpx_poller_init(struct kpx_poller *p, struct kw_loop *loop, enum kpx_poll mode,
                     unsigned interval_us, unsigned threshold, struct kpx_wmetrics *m,
                     void (*freed)(void *arg), void *arg)
{
	*p = (struct kpx_poller){
	    .loop = loop,
	    .mode = mode,
	    .interval_us = interval_us,
	    .threshold = threshold,
	    .m = m,
	    .freed = freed,
	    .freed_arg = arg,
	    .timerfd = -1,
	};
	kw_timer_init(&p->failover, failover, p);
	kw_io_init(&p->wake_io, on_wake, p);
	kw_io_init(&p->timer_io, on_timer, p);
}

int kpx_poller_start(struct kpx_poller *p, struct kw_backend *backend, bool ring)
{
	int rc;
	p->backend = backend;
	p->ring = ring;
	if (!ring)
		return 0;
	if ((rc = kw_io_start(p->loop, &p->wake_io, kw_backend_wake_fd(backend), KW_EV_READ)) < 0)
		return rc;
	if (p->mode == KPX_POLL_TIMER) {
		p->timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (p->timerfd < 0)
			return -errno;
		if ((rc = kw_io_start(p->loop, &p->timer_io, p->timerfd, KW_EV_READ)) < 0)
			return rc;
	}
	return 0;
}

void kpx_poller_cleanup(struct kpx_poller *p)
{
	kw_timer_stop(p->loop, &p->failover);
	kw_io_stop(p->loop, &p->wake_io);
	kw_io_stop(p->loop, &p->timer_io);
	if (p->timerfd >= 0)
		close(p->timerfd);
	p->timerfd = -1;
}

int kpx_poller_before_sleep(struct kpx_poller *p)
{
	if (p->backend == NULL)
		return -1;
	for (int k = 0; k < KW_OPK_COUNT; k++)
		kpx_set(&p->m->inflight[k], kw_backend_inflight(p->backend, (enum kw_op_kind)k));
	if (!p->ring)
		return -1;
	unsigned n = inflight(p);
	switch (p->mode) {
	case KPX_POLL_BUSY:
		if (n == 0)
			return -1;
		kpx_poller_poll(p, KPX_TRIG_BUSY);
		return 0;
	case KPX_POLL_TIMER:
		if (n > 0 && !p->timer_running)
			timer_set(p, true);
		return -1;
	default:
		if (n == 0)
			return -1;
		if (!kw_backend_arm(p->backend)) {
			/* Completions arrived while the turn ran: reap instead of sleeping. */
			kpx_poller_poll(p, KPX_TRIG_WAKEUP);
			return 0;
		}
		p->armed = true;
		return -1;
	}
}

void kpx_poller_after_wake(struct kpx_poller *p)
{
	if (p->armed) {
		kw_backend_disarm(p->backend);
		p->armed = false;
	}
}
