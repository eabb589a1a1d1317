/*
 * waitq.c - a worker's wait lists and remote queue (see waitq.h).
 *
 * The async queue is QTLS's application-defined queue: completions run on
 * the worker thread (the loop polls the backend), the SSL async callback
 * appends the connection, and the loop resumes everything queued before it
 * waits again, so a notification costs no system call. A completion on
 * another thread (a provider polling internally) goes through a locked
 * queue of its own, since the wait lists are the worker's alone.
 */
#include "waitq.h"

#include "stats.h"

static _Thread_local struct kpx_waitq *current;

void kpx_waitq_init(struct kpx_waitq *q, struct kw_loop *loop, _Atomic uint64_t *wakeups)
{
	kw_list_init(&q->asyncq);
	kw_list_init(&q->job_wait);
	kw_list_init(&q->cap_wait);
	kw_list_init(&q->remote_q);
	q->loop = loop;
	q->wakeups = wakeups;
	atomic_init(&q->remote_pending, false);
	pthread_mutex_init(&q->remote_mu, NULL);
}

void kpx_waitq_cleanup(struct kpx_waitq *q)
{
	pthread_mutex_destroy(&q->remote_mu);
}

void kpx_waiter_init(struct kpx_waiter *wt)
{
	kw_list_init(&wt->node);
	kw_list_init(&wt->rnode);
	wt->waiting = KPX_WAIT_NONE;
	wt->rqueued = false;
}

static struct kw_list *wait_list(struct kpx_waitq *q, enum kpx_wait which)
{
	switch (which) {
	case KPX_WAIT_ASYNCQ:
		return &q->asyncq;
	case KPX_WAIT_JOB:
		return &q->job_wait;
	case KPX_WAIT_CAPACITY:
		return &q->cap_wait;
	default:
		return NULL;
	}
}

void kpx_waitq_off(struct kpx_waiter *wt)
{
	if (wt->waiting != KPX_WAIT_NONE) {
		kw_list_del(&wt->node);
		wt->waiting = KPX_WAIT_NONE;
	}
}

void kpx_waitq_on(struct kpx_waitq *q, struct kpx_waiter *wt, enum kpx_wait which)
{
	kpx_waitq_off(wt);
	kw_list_add_tail(wait_list(q, which), &wt->node);
	wt->waiting = which;
}

void kpx_waitq_forget(struct kpx_waitq *q, struct kpx_waiter *wt)
{
	kpx_waitq_off(wt);
	if (wt->rqueued) {
		pthread_mutex_lock(&q->remote_mu);
		kw_list_del(&wt->rnode);
		wt->rqueued = false;
		pthread_mutex_unlock(&q->remote_mu);
	}
}

static struct kpx_waiter *first(struct kw_list *l)
{
	return kw_container_of(l->next, struct kpx_waiter, node);
}

void kpx_waitq_job_freed(struct kpx_waitq *q)
{
	/* One job came back, so one waiter can have it; the async queue runs it this turn. */
	if (!kw_list_empty(&q->job_wait))
		kpx_waitq_on(q, first(&q->job_wait), KPX_WAIT_ASYNCQ);
}

void kpx_waitq_capacity_freed(struct kpx_waitq *q)
{
	/* Slots came free: every connection refused for lack of one may retry. */
	while (!kw_list_empty(&q->cap_wait))
		kpx_waitq_on(q, first(&q->cap_wait), KPX_WAIT_ASYNCQ);
}

void kpx_waitq_bind_thread(struct kpx_waitq *q)
{
	current = q;
}

void kpx_waitq_notify(struct kpx_waitq *q, struct kpx_waiter *wt)
{
	if (current == q) {
		/* Kernel-bypass notification: the op completed on this thread; queue, no syscall.
		 */
		if (wt->waiting != KPX_WAIT_ASYNCQ) {
			kpx_waitq_on(q, wt, KPX_WAIT_ASYNCQ);
			kpx_add(q->wakeups, 1);
		}
		return;
	}
	pthread_mutex_lock(&q->remote_mu);
	if (!wt->rqueued) {
		wt->rqueued = true;
		kw_list_add_tail(&q->remote_q, &wt->rnode);
	}
	pthread_mutex_unlock(&q->remote_mu);
	atomic_store_explicit(&q->remote_pending, true, memory_order_release);
	kw_loop_wake(q->loop);
}

bool kpx_waitq_pending(const struct kpx_waitq *q)
{
	return !kw_list_empty(&q->asyncq);
}

static void take_remote(struct kpx_waitq *q)
{
	if (!atomic_exchange_explicit(&q->remote_pending, false, memory_order_acquire))
		return;
	pthread_mutex_lock(&q->remote_mu);
	while (!kw_list_empty(&q->remote_q)) {
		struct kpx_waiter *wt = kw_container_of(q->remote_q.next, struct kpx_waiter, rnode);
		kw_list_del(&wt->rnode);
		wt->rqueued = false;
		kpx_waitq_on(q, wt, KPX_WAIT_ASYNCQ);
		kpx_add(q->wakeups, 1);
	}
	pthread_mutex_unlock(&q->remote_mu);
}

void kpx_waitq_run(struct kpx_waitq *q, void (*resume)(struct kpx_waiter *wt))
{
	struct kw_list batch;

	take_remote(q);
	/* Move the queue aside: resuming may queue the same waiter again. */
	kw_list_move_all(&batch, &q->asyncq);
	while (!kw_list_empty(&batch)) {
		struct kpx_waiter *wt = first(&batch);
		kpx_waitq_off(wt);
		resume(wt);
	}
}
