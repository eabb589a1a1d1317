/*
 * poller.h - when a worker reaps its ring backend's completions.
 *
 * heuristic (QTLS, defaults as asynch_mode_nginx): after each submitted op
 * and whenever a connection goes idle or closes, poll if the ops in flight
 * reach the threshold (efficiency: reap a batch) or are at least the active
 * connections (timeliness: every active connection is waiting, so nothing
 * else can make progress). A 1 ms failover timer polls if no heuristic poll
 * happened in its interval. About to sleep with ops in flight, the worker
 * arms the backend's eventfd, so a completion wakes it.
 * timer: poll every interval while ops are in flight (a precise loop
 * timer, for sub-millisecond periods). busy: poll every loop turn and never sleep
 * while ops are in flight.
 * Backends without a ring (inline; keyless, which answers through sockets in
 * the loop) need none of this.
 *
 * A poller is embedded in its worker and runs on the worker's thread only.
 */
#ifndef KPX_POLLER_H
#define KPX_POLLER_H

#include <stdbool.h>

#include "keyway/backend.h"
#include "keyway/loop.h"
#include "stats.h"

/* --poll: when a ring backend is polled. Values are the option's choice indices. */
enum kpx_poll { KPX_POLL_HEURISTIC, KPX_POLL_TIMER, KPX_POLL_BUSY };

struct kpx_poller {
	struct kw_loop *loop;
	struct kw_backend *backend; /* NULL until kpx_poller_start */
	bool ring;                  /* the backend has completion rings to reap */
	enum kpx_poll mode;
	unsigned interval_us, threshold;
	struct kpx_wmetrics *m; /* polls, polled_ops and the inflight gauges */
	/* freed is called after a poll reaped completions: capacity came free. */
	void (*freed)(void *arg);
	void *freed_arg;
	struct kw_timer failover; /* heuristic: 1 ms safety net */
	unsigned heuristic_polls; /* heuristic polls since the failover timer was armed */
	struct kw_timer timer;    /* timer mode: precise, every interval_us */
	bool timer_running;
	struct kw_io wake_io; /* the backend's wake eventfd */
	bool armed;           /* the backend's eventfd is armed for this sleep */
};

/*
 * kpx_poller_init prepares p on loop (nothing registered yet): mode,
 * interval_us and threshold as --poll, --poll-interval-us and
 * --poll-threshold; m receives the counters; freed(arg) runs after every
 * poll that reaped something. Cannot fail.
 */
void kpx_poller_init(struct kpx_poller *p, struct kw_loop *loop, enum kpx_poll mode,
                     unsigned interval_us, unsigned threshold, struct kpx_wmetrics *m,
                     void (*freed)(void *arg), void *arg);
/* kpx_poller_start binds the worker's backend (ring: it must be reaped) and registers the
 * wake eventfd. 0 or -errno. */
int kpx_poller_start(struct kpx_poller *p, struct kw_backend *backend, bool ring);
/* kpx_poller_cleanup stops everything p registered (safe after a failed or no start). */
void kpx_poller_cleanup(struct kpx_poller *p);

/* kpx_poller_check is the QTLS heuristic with `active` connections, run after an op was
 * submitted and when a connection goes idle or closes. */
void kpx_poller_check(struct kpx_poller *p, unsigned active);
/* kpx_poller_refresh sets the in-flight gauges from the backend (each turn, and before a
 * paused handshake resumes, so its answer never beats its op out of the gauge). */
void kpx_poller_refresh(struct kpx_poller *p);
/* kpx_poller_before_sleep returns the loop timeout (ms, -1 forever) and arms the wake-up. */
int kpx_poller_before_sleep(struct kpx_poller *p);
/* kpx_poller_after_wake disarms what kpx_poller_before_sleep armed. */
void kpx_poller_after_wake(struct kpx_poller *p);
/* kpx_poller_poll reaps completions now, counted under why; returns how many (0 without a
 * backend). */
int kpx_poller_poll(struct kpx_poller *p, enum kpx_trigger why);

#endif
