/*
 * test_cap.c - capacity queues: counted slots, waiters woken oldest first
 * the way each waits (eventfd, callback outside the lock, condition
 * variable), a freed slot handed to the woken waiter, a waiter that leaves
 * passing its wake-up on, a waiter that leaves or resumes never overtaking
 * a callback still running on its behalf, and a blocked wait's deadline.
 */
#include <stdatomic.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "cap.h"
#include "check.h"
#include "keyway/err.h"

/* The queue's oldest and newest waiters (NULL when empty, or never used). */
static struct kwp_waiter *first(const struct kwp_cap *c)
{
	if (c->waiters.next == NULL || kw_list_empty(&c->waiters))
		return NULL;
	return kw_list_entry(c->waiters.next, struct kwp_waiter, link);
}

static struct kwp_waiter *last(const struct kwp_cap *c)
{
	if (c->waiters.prev == NULL || kw_list_empty(&c->waiters))
		return NULL;
	return kw_list_entry(c->waiters.prev, struct kwp_waiter, link);
}

static struct kwp_waiter fd_waiter(int efd)
{
	return (struct kwp_waiter){.mode = KWP_WAKE_FD, .efd = efd};
}

/* signalled reads efd: 1 if it was written since the last read. */
static int signalled(int efd)
{
	uint64_t v = 0;
	return read(efd, &v, sizeof(v)) == (ssize_t)sizeof(v) && v > 0;
}

static void test_slots_and_order(void)
{
	struct kwp_cap c;
	int e1 = eventfd(0, EFD_NONBLOCK), e2 = eventfd(0, EFD_NONBLOCK);
	struct kwp_waiter a = fd_waiter(-1), b = fd_waiter(-1), w1 = fd_waiter(e1),
	                  w2 = fd_waiter(e2);

	kwp_cap_init(&c, 2);
	CHECK_EQ(kwp_cap_take(&c, &a, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &b, true), 0);
	CHECK_EQ(c.used, 2);
	CHECK_EQ(kwp_cap_take(&c, &w1, false), -EAGAIN); /* full, not queued */
	CHECK(!w1.queued && first(&c) == NULL);
	CHECK_EQ(kwp_cap_take(&c, &w1, true), -EAGAIN);
	CHECK_EQ(kwp_cap_take(&c, &w2, true), -EAGAIN);
	CHECK(w1.queued && w2.queued && first(&c) == &w1 && last(&c) == &w2);

	/* A freed slot goes to the oldest waiter, and stays counted for it. */
	kwp_cap_wake(&c, true);
	CHECK(!w1.queued && w1.woken && w1.handed);
	CHECK_EQ(signalled(e1), 1);
	CHECK_EQ(signalled(e2), 0);
	CHECK_EQ(c.used, 2);
	CHECK(first(&c) == &w2);
	/* A newcomer cannot take it... */
	struct kwp_waiter late = fd_waiter(-1);
	CHECK_EQ(kwp_cap_take(&c, &late, false), -EAGAIN);
	/* ...the woken waiter does, without counting it twice. */
	CHECK_EQ(kwp_cap_unqueue(&c, &w1), true);
	CHECK_EQ(kwp_cap_take(&c, &w1, true), 0);
	CHECK(!w1.handed);
	CHECK_EQ(c.used, 2);

	/* w2 goes away for good after it was handed a slot: the slot is freed. */
	kwp_cap_wake(&c, true);
	CHECK(w2.handed && signalled(e2));
	kwp_cap_leave(&c, &w2);
	CHECK_EQ(c.used, 1);
	CHECK(!w2.handed && !w2.woken);

	/* With nobody waiting, a freed slot is just freed. */
	kwp_cap_wake(&c, true);
	CHECK_EQ(c.used, 0);
	kwp_cap_wake(&c, true);
	CHECK_EQ(c.used, 0); /* never below zero */

	/* A waiter that leaves while queued wakes nobody. */
	CHECK_EQ(kwp_cap_take(&c, &a, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &b, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &w1, true), -EAGAIN);
	CHECK_EQ(kwp_cap_take(&c, &w2, true), -EAGAIN);
	kwp_cap_leave(&c, &w1);
	CHECK(first(&c) == &w2 && !w1.queued);
	CHECK_EQ(signalled(e2), 0);
	/* One that leaves after being woken hands its slot to the next. */
	kwp_cap_forget(&c);
	CHECK(first(&c) == NULL && c.used == 0);
	CHECK_EQ(kwp_cap_take(&c, &a, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &b, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &w1, true), -EAGAIN);
	CHECK_EQ(kwp_cap_take(&c, &w2, true), -EAGAIN);
	kwp_cap_wake(&c, true);
	CHECK_EQ(signalled(e1), 1);
	kwp_cap_leave(&c, &w1);
	CHECK(w2.woken && w2.handed && !w2.queued);
	CHECK_EQ(signalled(e2), 1);
	CHECK_EQ(c.used, 2);

	kwp_cap_cleanup(&c);
	close(e1);
	close(e2);
}

struct cb_probe {
	struct kwp_cap *c;
	int calls;
	int lock_was_free;
};

static int probe_cb(void *arg)
{
	struct cb_probe *p = arg;
	p->calls++;
	/* Called with the queue's lock dropped: it may take it (resuming the job does). */
	if (pthread_mutex_trylock(&p->c->mu) == 0) {
		p->lock_was_free = 1;
		pthread_mutex_unlock(&p->c->mu);
	}
	return 1;
}

static void test_uncounted_callback(void)
{
	struct kwp_cap c = KWP_CAP_INITIALIZER; /* a bound backend counts its own slots */
	struct cb_probe probe = {&c, 0, 0};
	struct kwp_waiter w = {.mode = KWP_WAKE_CALLBACK, .cb = probe_cb, .cb_arg = &probe};

	kwp_cap_enqueue(&c, &w);
	CHECK(w.queued && first(&c) == &w);
	kwp_cap_wake(&c, true);
	CHECK_EQ(probe.calls, 1);
	CHECK_EQ(probe.lock_was_free, 1);
	CHECK(w.woken && !w.handed && !w.queued); /* woken, but no slot of ours */
	CHECK_EQ(c.used, 0);
	CHECK_EQ(kwp_cap_unqueue(&c, &w), true);
	CHECK_EQ(kwp_cap_unqueue(&c, &w), false); /* woken once */
	kwp_cap_wake(&c, false);                  /* nobody waits: nothing happens */
	CHECK_EQ(probe.calls, 1);
	CHECK_EQ(kwp_cap_unqueue(NULL, &w), false);
	kwp_cap_leave(NULL, &w);
}

/* A callback that blocks until released: the wake-up is "still calling". */
struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int entered, open;
};

static int gate_cb(void *arg)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->entered = 1;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	return 1;
}

struct caller {
	struct kwp_cap *c;
	struct kwp_waiter *w;
	bool leave; /* kwp_cap_leave (the SSL goes away), else kwp_cap_unqueue (the job resumed) */
	atomic_int returned;
};

static void *wake_it(void *arg)
{
	kwp_cap_wake(arg, true);
	return NULL;
}

static void *leave_or_resume(void *arg)
{
	struct caller *k = arg;
	if (k->leave)
		kwp_cap_leave(k->c, k->w);
	else
		(void)kwp_cap_unqueue(k->c, k->w);
	atomic_store(&k->returned, 1);
	return NULL;
}

static void test_callback_not_overtaken(bool leave)
{
	struct kwp_cap c;
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
	struct kwp_waiter busy = fd_waiter(-1);
	struct kwp_waiter w = {.mode = KWP_WAKE_CALLBACK, .cb = gate_cb, .cb_arg = &g};
	struct caller k = {&c, &w, leave, 0};
	pthread_t waker, other;

	kwp_cap_init(&c, 1);
	CHECK_EQ(kwp_cap_take(&c, &busy, true), 0);
	CHECK_EQ(kwp_cap_take(&c, &w, true), -EAGAIN);
	CHECK_EQ(pthread_create(&waker, NULL, wake_it, &c), 0);
	pthread_mutex_lock(&g.mu);
	while (!g.entered)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);

	/* The callback runs: whoever would free the waiter (or its SSL) must wait for it. */
	CHECK_EQ(pthread_create(&other, NULL, leave_or_resume, &k), 0);
	usleep(100 * 1000);
	CHECK_EQ(atomic_load(&k.returned), 0);

	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	pthread_join(waker, NULL);
	pthread_join(other, NULL);
	CHECK_EQ(atomic_load(&k.returned), 1);
	CHECK(!w.calling && !w.queued);
	if (leave)
		CHECK_EQ(c.used, 0); /* the handed slot went back: nobody else waits */
	else
		CHECK(w.handed);
	kwp_cap_cleanup(&c);
}

static struct timespec after_ms(long ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_nsec += ms * 1000000L;
	ts.tv_sec += ts.tv_nsec / 1000000000L;
	ts.tv_nsec %= 1000000000L;
	return ts;
}

static pthread_cond_t *monotonic_cond(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
	return cv;
}

static void *wake_later(void *arg)
{
	usleep(20 * 1000);
	kwp_cap_wake(arg, true);
	return NULL;
}

static void test_blocking_wait(void)
{
	struct kwp_cap c;
	pthread_cond_t cv;
	struct kwp_waiter busy = fd_waiter(-1);
	struct kwp_waiter w = {.mode = KWP_WAKE_COND, .cv = monotonic_cond(&cv)};
	pthread_t t;

	kwp_cap_init(&c, 1);
	CHECK_EQ(kwp_cap_take(&c, &busy, true), 0);

	/* Nobody frees the slot: the deadline takes the waiter out. */
	CHECK_EQ(kwp_cap_take(&c, &w, true), -EAGAIN);
	struct timespec soon = after_ms(30);
	CHECK_EQ(kwp_cap_wait(&c, &w, &soon), -KW_ETIMEOUT);
	CHECK(!w.queued && first(&c) == NULL);

	/* Another thread frees it: the waiter is signalled and handed the slot. */
	CHECK_EQ(kwp_cap_take(&c, &w, true), -EAGAIN);
	CHECK_EQ(pthread_create(&t, NULL, wake_later, &c), 0);
	struct timespec later = after_ms(5000);
	CHECK_EQ(kwp_cap_wait(&c, &w, &later), 0);
	pthread_join(t, NULL);
	CHECK(w.handed);
	CHECK_EQ(kwp_cap_take(&c, &w, true), 0);
	CHECK_EQ(c.used, 1);

	pthread_cond_destroy(&cv);
	kwp_cap_cleanup(&c);
}

int main(void)
{
	test_slots_and_order();
	test_uncounted_callback();
	test_callback_not_overtaken(true);
	test_callback_not_overtaken(false);
	test_blocking_wait();
	CHECK_DONE();
}
