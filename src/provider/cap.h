/*
 * cap.h - a capacity queue: callers waiting for an in-flight slot, oldest
 * first.
 *
 * The internal path (the provider's I/O thread) counts its slots here
 * (max_inflight per process); a thread's bound backend counts its own and
 * refuses with -EAGAIN (max 0 here: the queue only orders the waiters).
 * The completion that frees a slot wakes the first waiter, the way that
 * waiter waits (struct kwp_waiter), and with a counted slot hands the
 * slot to it: a newcomer cannot take it before the woken caller resumes,
 * so a waiter never loses its turn.
 */
#ifndef KEYWAY_PROVIDER_CAP_H
#define KEYWAY_PROVIDER_CAP_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <openssl/async.h>

#include "keyway/list.h"

/* How a waiter is woken: what its caller waits on. */
enum kwp_wake_mode {
	KWP_WAKE_COND = 0, /* a blocked thread outside any job: cv */
	KWP_WAKE_CALLBACK, /* a paused job in callback mode: cb(cb_arg) */
	KWP_WAKE_FD,       /* a paused job in fd mode: one write to efd */
};

/* A caller that may wait in a capacity queue (embedded in the provider's op). */
struct kwp_waiter {
	enum kwp_wake_mode mode;
	ASYNC_callback_fn cb; /* KWP_WAKE_CALLBACK */
	void *cb_arg;
	int efd;            /* KWP_WAKE_FD: the wait context's eventfd (owned by it) */
	pthread_cond_t *cv; /* KWP_WAKE_COND: signalled under the queue's lock */
	/* Guarded by the queue's mu. */
	bool queued;         /* in the queue */
	bool woken;          /* taken out of the queue by a freed slot */
	bool handed;         /* ...and given that slot: used counts it already */
	bool calling;        /* a wake-up is running cb(cb_arg) outside the lock */
	struct kw_list link; /* in the queue's waiters */
};

struct kwp_cap {
	pthread_mutex_t mu;
	pthread_cond_t called;  /* a wake-up's callback returned (kwp_waiter.calling cleared) */
	unsigned used, max;     /* slots in use and their limit (max 0: not counted here) */
	struct kw_list waiters; /* oldest first; all-zero (static storage) means empty */
};

/* KWP_CAP_INITIALIZER is an empty queue of max 0, for static and thread-local storage. */
#define KWP_CAP_INITIALIZER                                                                        \
	{                                                                                          \
		.mu = PTHREAD_MUTEX_INITIALIZER, .called = PTHREAD_COND_INITIALIZER                \
	}

/* kwp_cap_init prepares c (max 0: slots are the backend's business). */
void kwp_cap_init(struct kwp_cap *c, unsigned max);
void kwp_cap_cleanup(struct kwp_cap *c);

/* kwp_cap_forget empties c without waking anyone: a forked child's copy of its parent's waiters. */
void kwp_cap_forget(struct kwp_cap *c);

/*
 * kwp_cap_take takes a counted slot of c for w: the one a completion handed
 * it, else a free one. 0, or -EAGAIN when all are used (w then joins the
 * queue if queue is set: taking and joining happen under one lock, so no
 * freed slot can slip between).
 */
int kwp_cap_take(struct kwp_cap *c, struct kwp_waiter *w, bool queue);

/* kwp_cap_enqueue puts w at the back of c (a bound backend said -EAGAIN). */
void kwp_cap_enqueue(struct kwp_cap *c, struct kwp_waiter *w);

/* kwp_cap_unqueue takes w out of c if still queued; true if a freed slot had woken it. */
bool kwp_cap_unqueue(struct kwp_cap *c, struct kwp_waiter *w);

/*
 * kwp_cap_wake wakes the first waiter of c, the way it waits. With
 * free_slot (a completion gave a slot back) a counted slot is handed to
 * that waiter, or freed when nobody waits. A callback runs after the lock
 * is dropped (it may take locks of its own), but the waiter is marked as
 * being called meanwhile: kwp_cap_take, kwp_cap_unqueue and kwp_cap_leave
 * wait until it returned, so neither a resumed job that frees the waiter
 * nor an SSL going away (kwp_cap_leave from its wait context's cleanup) can
 * overtake a callback still running on its behalf. An eventfd is written
 * under the lock, so a waiter that leaves before its descriptor closes is
 * never written after.
 */
void kwp_cap_wake(struct kwp_cap *c, bool free_slot);

/*
 * kwp_cap_leave is for a waiter that goes away for good (its wait context
 * is freed with the job paused): out of the queue, and a wake-up or slot it
 * was given passes on to the next waiter.
 */
void kwp_cap_leave(struct kwp_cap *c, struct kwp_waiter *w);

/*
 * kwp_cap_wait blocks the calling thread (w in KWP_WAKE_COND mode, queued by
 * kwp_cap_take) until w leaves the queue, or until the CLOCK_MONOTONIC time
 * deadline. 0, or -KW_ETIMEOUT (w is then out of the queue).
 */
int kwp_cap_wait(struct kwp_cap *c, struct kwp_waiter *w, const struct timespec *deadline);

/* kwp_waiter_wake wakes w the way it waits; the caller holds what its mode needs. */
void kwp_waiter_wake(const struct kwp_waiter *w);

#endif
