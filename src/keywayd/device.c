/*
 * device.c - the PKCS#11 device threads (see device.h).
 *
 * One mutex-protected FIFO feeds every thread: token operations take tens of
 * microseconds at the least (SoftHSM2 ~50 us for P-256, a network HSM
 * milliseconds), so the lock is never what limits them, and one queue keeps
 * requests in arrival order across tokens. The counters are shared by the
 * threads and updated with atomic adds.
 */
#include "device.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "keyway/loop.h"

struct kwd_devpool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kwd_devreq *head, *tail;
	size_t queued, cap;
	bool stopping;
	unsigned nthreads;
	pthread_t *threads;

	_Atomic uint64_t ops[KWD_DEV_NRES];
	_Atomic uint64_t depth; /* queued, for scrapes without the lock */
	_Atomic uint64_t running;
	_Atomic uint64_t bucket[KWD_DEV_NRES][KWD_HIST_BUCKETS + 1];
	_Atomic uint64_t sum_ns[KWD_DEV_NRES];
};

static enum kwd_dev_result result_of(enum kw_proto_error e)
{
	return e == KW_ERR_NONE     ? KWD_DEV_OK
	       : e == KW_ERR_CRYPTO ? KWD_DEV_CRYPTO_ERROR
	                            : KWD_DEV_INTERNAL_ERROR;
}

/* observe counts one finished operation (the same buckets as metrics.h's histograms). */
static void observe(struct kwd_devpool *p, enum kwd_dev_result res, uint64_t ns)
{
	unsigned i = 0;
	uint64_t bound = 100000; /* 100 us */
	while (i < KWD_HIST_BUCKETS && ns > bound) {
		bound <<= 1;
		i++;
	}
	atomic_fetch_add_explicit(&p->bucket[res][i], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->sum_ns[res], ns, memory_order_relaxed);
	atomic_fetch_add_explicit(&p->ops[res], 1, memory_order_relaxed);
}

/*
 * Finished requests are handed back in bursts (see KWD_DEVICE_BURST_NS): when
 * the queue runs dry, or when the next operation would end past the bound
 * after the oldest one held (judged by how long the last one took, so a slow
 * token -- a network HSM -- hands back every answer at once). Each hand-back
 * wakes the submitter's loop (an eventfd write, a context switch, a response
 * write), so a busy device answering one request at a time would cost the loop
 * more than the token spends on a fast key (~50 us for P-256 on SoftHSM2);
 * the bound keeps what the burst adds to a request's latency small.
 */
static void run(struct kwd_devpool *p, struct kwd_devreq *r)
{
	/* Asked as late as possible: a connection that closed while r waited in the
	 * queue must not keep the token (and so every other client) busy. */
	if (r->cancelled != NULL && r->cancelled(r)) {
		r->error = KW_ERR_INTERNAL;
		r->out_len = 0;
		r->exec_ns = 0;
		atomic_fetch_add_explicit(&p->ops[KWD_DEV_CANCELLED], 1, memory_order_relaxed);
		return;
	}
	uint64_t t0 = kw_now_ns();

	atomic_fetch_add_explicit(&p->running, 1, memory_order_relaxed);
	r->error = kwd_p11_run(r->key, r->desc, r->in, r->in_len, r->out, r->out_cap, &r->out_len);
	r->exec_ns = kw_now_ns() - t0;
	atomic_fetch_sub_explicit(&p->running, 1, memory_order_relaxed);
	observe(p, result_of(r->error), r->exec_ns);
}

/*
 * The executors a burst being handed back owes a wake-up (job_done adds them):
 * each is woken once, after the whole burst, so its loop takes the burst in one
 * go instead of waking (and, on a shared core, preempting this thread) at the
 * first answer. More executors than fit are woken at once.
 */
#define WAKE_MAX 16
static _Thread_local struct kwd_executor *wake_due[WAKE_MAX];
static _Thread_local unsigned nwake_due;

static void wake_later(struct kwd_executor *ex)
{
	for (unsigned i = 0; i < nwake_due; i++)
		if (wake_due[i] == ex)
			return;
	if (nwake_due == WAKE_MAX)
		kwd_executor_wake(ex);
	else
		wake_due[nwake_due++] = ex;
}

/* hand_back calls the done callbacks of a burst, oldest first, then wakes who is owed. */
static void hand_back(struct kwd_devreq *list)
{
	while (list != NULL) {
		struct kwd_devreq *next = list->next;
		list->done(list); /* list may be gone after this */
		list = next;
	}
	for (unsigned i = 0; i < nwake_due; i++)
		kwd_executor_wake(wake_due[i]);
	nwake_due = 0;
}

static void *thread_main(void *arg)
{
	struct kwd_devpool *p = arg;
	struct kwd_devreq *burst = NULL, **burst_tail = &burst;
	uint64_t burst_t0 = 0, last_ns = 0;

	pthread_mutex_lock(&p->lock);
	for (;;) {
		if (burst != NULL && (p->head == NULL || p->stopping ||
		                      kw_now_ns() - burst_t0 + last_ns >= KWD_DEVICE_BURST_NS)) {
			pthread_mutex_unlock(&p->lock);
			hand_back(burst);
			burst = NULL;
			burst_tail = &burst;
			pthread_mutex_lock(&p->lock);
			continue;
		}
		while (p->head == NULL && !p->stopping)
			pthread_cond_wait(&p->cond, &p->lock);
		if (p->head == NULL)
			break; /* stopping, and nothing left to run */
		struct kwd_devreq *r = p->head;
		p->head = r->next;
		if (p->head == NULL)
			p->tail = NULL;
		p->queued--;
		atomic_store_explicit(&p->depth, p->queued, memory_order_relaxed);
		pthread_mutex_unlock(&p->lock);
		run(p, r);
		last_ns = r->exec_ns;
		r->next = NULL;
		if (burst == NULL)
			burst_t0 = kw_now_ns();
		*burst_tail = r;
		burst_tail = &r->next;
		pthread_mutex_lock(&p->lock);
	}
	pthread_mutex_unlock(&p->lock);
	hand_back(burst);
	return NULL;
}

int kwd_devpool_new(unsigned nthreads, size_t queue_cap, struct kwd_devpool **out)
{
	struct kwd_devpool *p = calloc(1, sizeof(*p));
	int rc;

	*out = NULL;
	if (p == NULL)
		return -ENOMEM;
	if (nthreads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		nthreads = n > 0 ? (unsigned)n : 1;
	}
	p->cap = queue_cap > 0 ? queue_cap : 1;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	if ((p->threads = calloc(nthreads, sizeof(*p->threads))) == NULL) {
		kwd_devpool_free(p);
		return -ENOMEM;
	}
	for (unsigned i = 0; i < nthreads; i++) {
		if ((rc = pthread_create(&p->threads[i], NULL, thread_main, p)) != 0) {
			kwd_devpool_free(p);
			return -rc;
		}
		p->nthreads++;
	}
	*out = p;
	return 0;
}

void kwd_devpool_free(struct kwd_devpool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->lock);
	p->stopping = true;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nthreads; i++)
		pthread_join(p->threads[i], NULL);
	free(p->threads);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
}

unsigned kwd_devpool_threads(const struct kwd_devpool *p)
{
	return p->nthreads;
}

int kwd_devpool_submit(struct kwd_devpool *p, struct kwd_devreq *r)
{
	r->next = NULL;
	r->queued_ns = kw_now_ns();
	pthread_mutex_lock(&p->lock);
	if (p->queued >= p->cap || p->stopping) {
		pthread_mutex_unlock(&p->lock);
		return -EAGAIN;
	}
	if (p->tail != NULL)
		p->tail->next = r;
	else
		p->head = r;
	p->tail = r;
	p->queued++;
	atomic_store_explicit(&p->depth, p->queued, memory_order_relaxed);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

void kwd_devpool_stats(struct kwd_devpool *p, struct kwd_devpool_stats *out)
{
	for (int i = 0; i < KWD_DEV_NRES; i++)
		out->ops[i] = atomic_load_explicit(&p->ops[i], memory_order_relaxed);
	out->queued = atomic_load_explicit(&p->depth, memory_order_relaxed);
	out->running = atomic_load_explicit(&p->running, memory_order_relaxed);
}

void kwd_devpool_latency(struct kwd_devpool *p, enum kwd_dev_result res, uint64_t *buckets,
                         uint64_t *sum_ns)
{
	for (int i = 0; i <= KWD_HIST_BUCKETS; i++)
		buckets[i] = atomic_load_explicit(&p->bucket[res][i], memory_order_relaxed);
	*sum_ns = atomic_load_explicit(&p->sum_ns[res], memory_order_relaxed);
}

/* ---- the executor's device kind ---- */

/* A pool request carrying an executor job. */
struct job_req {
	struct kwd_devreq r;
	struct kwd_job *job;
};

/* job_cancelled: only the job is read (it lives until kwd_job_finish), never its connection. */
static bool job_cancelled(const struct kwd_devreq *r)
{
	return kwd_job_cancelled(((const struct job_req *)r)->job);
}

static void job_done(struct kwd_devreq *r)
{
	struct job_req *jr = (struct job_req *)r;
	struct kwd_job *job = jr->job;

	if (r->error == KW_ERR_NONE)
		kwd_exec_result_output(&job->res, r->out_len);
	else
		kwd_exec_result_error(&job->res, r->error);
	job->exec_ns = r->exec_ns;
	free(jr);
	struct kwd_executor *ex = kwd_job_finish_quiet(job); /* job may be gone after this */
	if (ex != NULL)
		wake_later(ex); /* hand_back wakes it after the burst */
}

static int p11_submit(struct kwd_device *dev, struct kwd_job *job)
{
	struct kwd_p11_device *d = (struct kwd_p11_device *)dev;
	const struct kwd_p11_key *key = job->op.key->p11;
	struct job_req *jr;
	int rc;

	if (key == NULL)
		return -EINVAL;
	if ((jr = calloc(1, sizeof(*jr))) == NULL)
		return -ENOMEM;
	jr->job = job;
	jr->r = (struct kwd_devreq){
	    .key = key,
	    .desc = job->op.desc,
	    .in = job->op.in.data,
	    .in_len = job->op.in.len,
	    .out = job->res.buf,
	    .out_cap = sizeof(job->res.buf),
	    .done = job_done,
	    .cancelled = job_cancelled,
	};
	/* The job's generation reference keeps key (its keystore and set) alive. */
	if ((rc = kwd_devpool_submit(d->pool, &jr->r)) != 0)
		free(jr);
	return rc;
}

void kwd_p11_device_init(struct kwd_p11_device *d, struct kwd_devpool *pool)
{
	d->dev.submit = p11_submit;
	d->pool = pool;
}
