/* cap.c - capacity queues: who waits for an in-flight slot (see cap.h). */
#include "cap.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "keyway/err.h"

void kwp_cap_init(struct kwp_cap *c, unsigned max)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->mu, NULL);
	pthread_cond_init(&c->called, NULL);
	c->max = max;
}

void kwp_cap_cleanup(struct kwp_cap *c)
{
	pthread_cond_destroy(&c->called);
	pthread_mutex_destroy(&c->mu);
}

void kwp_cap_forget(struct kwp_cap *c)
{
	c->used = 0;
	kw_list_init(&c->waiters);
	/* A callback the parent was running never returns here: nobody may wait for it. */
	pthread_cond_init(&c->called, NULL);
}

/*
 * waiters is c's queue, made a proper empty list on first use: a queue in
 * thread-local storage starts all-zero (KWP_CAP_INITIALIZER), and a list head
 * must point to itself.
 */
static struct kw_list *waiters(struct kwp_cap *c)
{
	if (c->waiters.next == NULL)
		kw_list_init(&c->waiters);
	return &c->waiters;
}

/* Called with c->mu held. */
static void link_waiter(struct kwp_cap *c, struct kwp_waiter *w)
{
	kw_list_add_tail(waiters(c), &w->link);
	w->queued = true;
	w->woken = false;
}

/* Called with c->mu held. */
static void unlink_waiter(struct kwp_cap *c, struct kwp_waiter *w)
{
	(void)c;
	kw_list_del(&w->link);
	w->queued = false;
}

/* Called with c->mu held: waits out a wake-up still calling w's callback. */
static void wait_call(struct kwp_cap *c, struct kwp_waiter *w)
{
	while (w->calling)
		pthread_cond_wait(&c->called, &c->mu);
}

void kwp_waiter_wake(const struct kwp_waiter *w)
{
	uint64_t one = 1;
	ssize_t n;

	switch (w->mode) {
	case KWP_WAKE_FD:
		do
			n = write(w->efd, &one, sizeof(one));
		while (n < 0 && errno == EINTR);
		break;
	case KWP_WAKE_CALLBACK:
		w->cb(w->cb_arg);
		break;
	case KWP_WAKE_COND:
		pthread_cond_signal(w->cv);
		break;
	}
}

int kwp_cap_take(struct kwp_cap *c, struct kwp_waiter *w, bool queue)
{
	int rc = 0;

	pthread_mutex_lock(&c->mu);
	wait_call(c, w);
	if (w->handed) {
		w->handed = false; /* the slot a completion handed over */
	} else if (c->used >= c->max) {
		if (queue)
			link_waiter(c, w);
		rc = -EAGAIN;
	} else {
		c->used++;
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}

void kwp_cap_enqueue(struct kwp_cap *c, struct kwp_waiter *w)
{
	pthread_mutex_lock(&c->mu);
	link_waiter(c, w);
	pthread_mutex_unlock(&c->mu);
}

bool kwp_cap_unqueue(struct kwp_cap *c, struct kwp_waiter *w)
{
	bool woken;

	if (c == NULL)
		return false;
	pthread_mutex_lock(&c->mu);
	wait_call(c, w);
	if (w->queued)
		unlink_waiter(c, w);
	woken = w->woken;
	w->woken = false;
	pthread_mutex_unlock(&c->mu);
	return woken;
}

void kwp_cap_wake(struct kwp_cap *c, bool free_slot)
{
	struct kwp_waiter *called = NULL;
	bool counted = free_slot && c->max != 0;

	pthread_mutex_lock(&c->mu);
	struct kw_list *q = waiters(c);
	struct kwp_waiter *w =
	    kw_list_empty(q) ? NULL : kw_list_entry(kw_list_first(q), struct kwp_waiter, link);
	if (counted && w == NULL && c->used > 0)
		c->used--;
	if (w != NULL) {
		unlink_waiter(c, w);
		w->woken = true;
		w->handed = counted;
		if (w->mode == KWP_WAKE_CALLBACK) {
			w->calling = true; /* w stays valid until we clear it (wait_call) */
			called = w;
		} else {
			kwp_waiter_wake(w);
		}
	}
	pthread_mutex_unlock(&c->mu);
	if (called == NULL)
		return;
	/* Unlocked: it may take locks of its own. It only schedules the job's resumption. */
	called->cb(called->cb_arg);
	pthread_mutex_lock(&c->mu);
	called->calling = false;
	pthread_cond_broadcast(&c->called);
	pthread_mutex_unlock(&c->mu);
}

void kwp_cap_leave(struct kwp_cap *c, struct kwp_waiter *w)
{
	bool handed, woken;

	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	wait_call(c, w);
	handed = w->handed;
	w->handed = false;
	if (w->queued)
		unlink_waiter(c, w);
	woken = w->woken;
	w->woken = false;
	pthread_mutex_unlock(&c->mu);
	if (woken || handed)
		kwp_cap_wake(c, handed); /* a job that will never run cannot use it: pass it on */
}

int kwp_cap_wait(struct kwp_cap *c, struct kwp_waiter *w, const struct timespec *deadline)
{
	int rc = 0;

	pthread_mutex_lock(&c->mu);
	while (w->queued) {
		if (pthread_cond_timedwait(w->cv, &c->mu, deadline) == ETIMEDOUT && w->queued) {
			unlink_waiter(c, w);
			rc = -KW_ETIMEOUT;
		}
	}
	pthread_mutex_unlock(&c->mu);
	return rc;
}
