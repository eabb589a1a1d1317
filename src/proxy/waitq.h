/*
 * waitq.h - a worker's wait lists: connections waiting to be resumed, and
 * the locked queue through which another thread hands one over.
 *
 * A waiter (embedded in each connection) is on at most one of three lists:
 *   asyncq    its op completed (or a retry is due): resume it this loop turn
 *             (QTLS's application-defined async queue: no system call);
 *   job_wait  SSL_ERROR_WANT_ASYNC_JOB: the job pool was at its bound;
 *   cap_wait  the backend was full: retry after the next completion.
 * and independently on the remote queue, where a completion signalled on
 * another thread puts it under the queue's lock.
 *
 * Threads: everything but kpx_waitq_notify runs on the owning worker's
 * thread; kpx_waitq_notify may run on any thread.
 */
#ifndef KPX_WAITQ_H
#define KPX_WAITQ_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "keyway/loop.h"
#include "keyway/list.h"

/* Which wait list a waiter is on (at most one). */
enum kpx_wait { KPX_WAIT_NONE, KPX_WAIT_ASYNCQ, KPX_WAIT_JOB, KPX_WAIT_CAPACITY };

struct kpx_waiter {
	struct kw_list node;   /* in one of the wait lists */
	enum kpx_wait waiting; /* which one */
	struct kw_list rnode;  /* in the remote queue (under its lock) */
	bool rqueued;          /* on the remote queue (under its lock) */
};

struct kpx_waitq {
	struct kw_list asyncq, job_wait, cap_wait;
	struct kw_loop *loop;      /* woken by a remote notification */
	_Atomic uint64_t *wakeups; /* counts notifications queued (async_queue_wakeups) */
	pthread_mutex_t remote_mu; /* guards remote_q and every waiter's rnode/rqueued */
	struct kw_list remote_q;
	_Atomic bool remote_pending; /* remote_q may be non-empty: lets the loop skip the lock */
};

/* kpx_waitq_init makes q's lists empty; loop is woken by remote notifications, wakeups
 * counts queued notifications (single writer: the owning thread). Cannot fail. */
void kpx_waitq_init(struct kpx_waitq *q, struct kw_loop *loop, _Atomic uint64_t *wakeups);
/* kpx_waitq_cleanup destroys the lock; no waiter may be left on q. */
void kpx_waitq_cleanup(struct kpx_waitq *q);

/* kpx_waiter_init makes wt a waiter on no list. */
void kpx_waiter_init(struct kpx_waiter *wt);

/* kpx_waitq_on puts wt on list which of q, taking it off any other. */
void kpx_waitq_on(struct kpx_waitq *q, struct kpx_waiter *wt, enum kpx_wait which);
/* kpx_waitq_off takes wt off its wait list (if any). */
void kpx_waitq_off(struct kpx_waiter *wt);
/* kpx_waitq_forget takes wt off every list of q, the remote queue too (before it is freed). */
void kpx_waitq_forget(struct kpx_waitq *q, struct kpx_waiter *wt);

/* kpx_waitq_job_freed: one job went back to the pool, so one job waiter (the oldest) is
 * queued to run this turn. */
void kpx_waitq_job_freed(struct kpx_waitq *q);
/* kpx_waitq_capacity_freed: backend slots came free, so every capacity waiter is queued. */
void kpx_waitq_capacity_freed(struct kpx_waitq *q);

/* kpx_waitq_bind_thread makes q the calling thread's own queue (for kpx_waitq_notify). */
void kpx_waitq_bind_thread(struct kpx_waitq *q);
/*
 * kpx_waitq_notify: wt's op completed. On q's own thread it is queued on
 * asyncq (counted once); on any other thread it goes to the remote queue
 * under the lock and q's loop is woken.
 */
void kpx_waitq_notify(struct kpx_waitq *q, struct kpx_waiter *wt);

/* kpx_waitq_pending: something is queued to run (the loop must not sleep). */
bool kpx_waitq_pending(const struct kpx_waitq *q);
/*
 * kpx_waitq_run takes over the remote queue, then calls resume for every
 * waiter queued when it starts (taken off the list first; waiters queued by
 * resume run next turn).
 */
void kpx_waitq_run(struct kpx_waitq *q, void (*resume)(struct kpx_waiter *wt));

#endif
