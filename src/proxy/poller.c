/* poller.c - when a worker reaps its ring backend's completions (see poller.h). */
#include "poller.h"

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

/* timer_set starts or stops the polling timer; false when the loop refused to start it. */
static bool timer_set(struct kpx_poller *p, bool on)
{
	if (!on) {
		kw_timer_stop(p->loop, &p->timer);
		p->timer_running = false;
		return true;
	}
	p->timer_running = kw_timer_start_us(p->loop, &p->timer, p->interval_us) == 0;
	return p->timer_running;
}

/* on_timer polls every interval while ops are in flight, re-armed from the previous
 * deadline so the period does not drift by the time the poll took. */
static void on_timer(struct kw_loop *loop, void *arg)
{
	struct kpx_poller *p = arg;
	if (inflight(p) > 0)
		kpx_poller_poll(p, KPX_TRIG_TIMER);
	if (inflight(p) == 0)
		timer_set(p, false);
	else if (kw_timer_start_at(loop, &p->timer,
	                           p->timer.deadline_ns + 1000ull * p->interval_us) < 0)
		p->timer_running = false; /* refused: kpx_poller_before_sleep starts it afresh */
}

void kpx_poller_init(struct kpx_poller *p, struct kw_loop *loop, enum kpx_poll mode,
                     unsigned interval_us, unsigned threshold, struct kpx_wmetrics *m,
                     void (*freed)(void *arg), void *arg)
{
	*p = (struct kpx_poller){.loop = loop,
	                         .mode = mode,
	                         .interval_us = interval_us,
	                         .threshold = threshold,
	                         .m = m,
	                         .freed = freed,
	                         .freed_arg = arg};
	kw_timer_init(&p->failover, failover, p);
	kw_io_init(&p->wake_io, on_wake, p);
	kw_timer_init_precise(&p->timer, on_timer, p);
}

int kpx_poller_start(struct kpx_poller *p, struct kw_backend *backend, bool ring)
{
	p->backend = backend;
	p->ring = ring;
	if (!ring)
		return 0;
	return kw_io_start(p->loop, &p->wake_io, kw_backend_wake_fd(backend), KW_EV_READ);
}

void kpx_poller_cleanup(struct kpx_poller *p)
{
	kw_timer_stop(p->loop, &p->failover);
	kw_io_stop(p->loop, &p->wake_io);
	kw_timer_stop(p->loop, &p->timer);
	p->timer_running = false;
}

void kpx_poller_refresh(struct kpx_poller *p)
{
	if (p->backend == NULL)
		return;
	for (int k = 0; k < KW_OPK_COUNT; k++)
		kpx_set(&p->m->inflight[k], kw_backend_inflight(p->backend, (enum kw_op_kind)k));
}

int kpx_poller_before_sleep(struct kpx_poller *p)
{
	if (p->backend == NULL)
		return -1;
	kpx_poller_refresh(p);
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
		if (n > 0 && !p->timer_running && !timer_set(p, true)) {
			/* No timer to wait for: reap now and do not sleep, not never. */
			kpx_poller_poll(p, KPX_TRIG_TIMER);
			return 0;
		}
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
