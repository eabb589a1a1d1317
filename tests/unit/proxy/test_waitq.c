/*
 * test_waitq.c - the wait lists: a waiter is on one list at a time, a
 * freed job wakes the oldest job waiter, freed capacity wakes every
 * capacity waiter, a run resumes what was queued when it began (in order;
 * a waiter queued again runs next time), and a notification queues on the
 * owning thread without a lock but from another thread through the remote
 * queue, which wakes the loop and which forget cleans.
 */
#include <pthread.h>

#include "check.h"
#include "keyway/loop.h"
#include "waitq.h"

struct item {
	struct kpx_waiter wt;
	int id;
};

static struct kpx_waitq q;
static int order[16], nrun;
static struct item *again; /* queued again by its own resume */

static void resume(struct kpx_waiter *wt)
{
	struct item *it = kw_container_of(wt, struct item, wt);
	CHECK_EQ(wt->waiting, KPX_WAIT_NONE); /* taken off before resume runs */
	if (nrun < 16)
		order[nrun++] = it->id;
	if (it == again) {
		again = NULL;
		kpx_waitq_on(&q, wt, KPX_WAIT_ASYNCQ);
	}
}

static void reset_run(void)
{
	nrun = 0;
}

static void test_lists(struct item *it)
{
	/* One list at a time. */
	kpx_waitq_on(&q, &it[0].wt, KPX_WAIT_JOB);
	kpx_waitq_on(&q, &it[0].wt, KPX_WAIT_CAPACITY);
	CHECK_EQ(it[0].wt.waiting, KPX_WAIT_CAPACITY);
	CHECK(kw_list_empty(&q.job_wait));
	kpx_waitq_off(&it[0].wt);
	kpx_waitq_off(&it[0].wt); /* twice is harmless */
	CHECK_EQ(it[0].wt.waiting, KPX_WAIT_NONE);
	CHECK(kw_list_empty(&q.cap_wait));

	/* A freed job goes to the oldest job waiter only. */
	kpx_waitq_on(&q, &it[1].wt, KPX_WAIT_JOB);
	kpx_waitq_on(&q, &it[2].wt, KPX_WAIT_JOB);
	kpx_waitq_job_freed(&q);
	CHECK_EQ(it[1].wt.waiting, KPX_WAIT_ASYNCQ);
	CHECK_EQ(it[2].wt.waiting, KPX_WAIT_JOB);
	CHECK(kpx_waitq_pending(&q));

	/* Freed capacity goes to every capacity waiter, after what was queued. */
	kpx_waitq_on(&q, &it[3].wt, KPX_WAIT_CAPACITY);
	kpx_waitq_on(&q, &it[4].wt, KPX_WAIT_CAPACITY);
	kpx_waitq_capacity_freed(&q);
	CHECK(kw_list_empty(&q.cap_wait));

	/* A run resumes 1, 3, 4 in order; 3 queues itself again and runs next time. */
	reset_run();
	again = &it[3];
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 3);
	CHECK_EQ(order[0], 1);
	CHECK_EQ(order[1], 3);
	CHECK_EQ(order[2], 4);
	CHECK(kpx_waitq_pending(&q));
	reset_run();
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 1);
	CHECK_EQ(order[0], 3);
	CHECK(!kpx_waitq_pending(&q));

	/* 2 is the last job waiter; a job freed with none waiting changes nothing. */
	kpx_waitq_job_freed(&q);
	CHECK_EQ(it[2].wt.waiting, KPX_WAIT_ASYNCQ);
	kpx_waitq_job_freed(&q);
	CHECK(kw_list_empty(&q.job_wait));
	reset_run();
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 1);
	CHECK_EQ(order[0], 2);
}

static void test_local_notify(struct item *it, _Atomic uint64_t *wakeups)
{
	kpx_waitq_bind_thread(&q);
	uint64_t before = *wakeups;
	kpx_waitq_on(&q, &it[5].wt, KPX_WAIT_CAPACITY);
	kpx_waitq_notify(&q, &it[5].wt);
	kpx_waitq_notify(&q, &it[5].wt); /* a duplicate is queued and counted once */
	CHECK_EQ(it[5].wt.waiting, KPX_WAIT_ASYNCQ);
	CHECK(!it[5].wt.rqueued);
	CHECK_EQ(*wakeups - before, 1);
	reset_run();
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 1);
	CHECK_EQ(order[0], 5);
}

struct remote_arg {
	struct item *it;
	int n;
};

static void *notify_from_thread(void *arg)
{
	struct remote_arg *a = arg;
	for (int i = 0; i < a->n; i++)
		kpx_waitq_notify(&q, &a->it[i].wt);
	kpx_waitq_notify(&q, &a->it[0].wt); /* a duplicate stays queued once */
	return NULL;
}

static void test_remote_notify(struct kw_loop *loop, struct item *it, _Atomic uint64_t *wakeups)
{
	pthread_t t;
	struct remote_arg a = {&it[6], 3};
	uint64_t before = *wakeups;

	kpx_waitq_bind_thread(&q);
	CHECK_EQ(pthread_create(&t, NULL, notify_from_thread, &a), 0);
	pthread_join(t, NULL);
	CHECK(it[6].wt.rqueued && it[7].wt.rqueued && it[8].wt.rqueued);
	CHECK(!kpx_waitq_pending(&q)); /* not on the owner's list until a run takes them */
	/* The loop was woken: a turn with a long timeout returns at once. */
	uint64_t t0 = kw_now_ns();
	kw_loop_run_once(loop, 2000);
	CHECK(kw_now_ns() - t0 < 1000000000ull);

	/* forget takes a waiter off the remote queue too (a connection closing meanwhile). */
	kpx_waitq_forget(&q, &it[7].wt);
	CHECK(!it[7].wt.rqueued);
	reset_run();
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 2);
	CHECK_EQ(order[0], 6);
	CHECK_EQ(order[1], 8);
	CHECK_EQ(*wakeups - before, 2);
	CHECK(!it[6].wt.rqueued && !it[8].wt.rqueued);

	/* Unbound, the calling thread is "another" thread too. */
	kpx_waitq_bind_thread(NULL);
	kpx_waitq_notify(&q, &it[9].wt);
	CHECK(it[9].wt.rqueued);
	CHECK_EQ(it[9].wt.waiting, KPX_WAIT_NONE);
	kpx_waitq_forget(&q, &it[9].wt);
	reset_run();
	kpx_waitq_run(&q, resume);
	CHECK_EQ(nrun, 0);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	struct item it[10];
	_Atomic uint64_t wakeups = 0;

	CHECK_EQ(kw_loop_new(&loop), 0);
	kpx_waitq_init(&q, loop, &wakeups);
	for (int i = 0; i < 10; i++) {
		kpx_waiter_init(&it[i].wt);
		it[i].id = i;
	}
	test_lists(it);
	test_local_notify(it, &wakeups);
	test_remote_notify(loop, it, &wakeups);
	kpx_waitq_cleanup(&q);
	kw_loop_free(loop);
	CHECK_DONE();
}
