/*
 * executor.c - keywayd's request executor (see executor.h).
 *
 * Device completions come back through a lock-free stack (any number of
 * device threads push, the loop thread takes the whole stack at once) and one
 * eventfd write per empty-to-non-empty transition, so a burst of completions
 * costs the loop one wake-up. Batched jobs are gathered in a list and run by
 * a before-sleep hook: everything a loop turn read is in it by then.
 *
 * Answers are delivered in rounds: each job's owner is told (done), then each
 * owner touched in the round is settled once, so a connection writes all of
 * a round's answers with one TLS write.
 */
#include "executor.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyway/err.h"
#include "keyway/log.h"

/* Gathered jobs handed to the batcher at once: one full multi-buffer batch (an
 * RSA-4096 one takes over 10 ms, the longest a request elsewhere should wait). */
#define BATCH_CHUNK 8
/* How long one loop turn may compute batches before the rest waits a turn (as conn.c's slice). */
#define BATCH_SLICE_NS 2000000u

struct kwd_executor {
	struct kw_loop *loop;
	struct kwd_exec *exec; /* inline context cache for gen's keys */
	struct kwd_gen *gen;   /* borrowed (kwd_executor_use) */
	struct kwd_batcher *batcher;
	struct kw_list batch; /* jobs gathered for the batcher this turn */
	size_t nbatch;
	struct kw_hook hook;  /* runs the batch before the loop sleeps */
	struct kw_timer more; /* a batch left over by run_batch's time slice */
	int efd;              /* device completions */
	struct kw_io efd_io;
	_Atomic(struct kwd_job *) done; /* finished device jobs, newest first */
	atomic_uint in_device;          /* jobs handed to devices, not yet taken back */
	atomic_uint waking;             /* device threads handing a job back, or owing a wake-up */
	struct kw_list round;           /* owners touched in the current round */
	struct kwd_executor_stats stats;
};

void kwd_job_owner_init(struct kwd_job_owner *o, const struct kwd_job_owner_ops *ops)
{
	o->ops = ops;
	kw_list_init(&o->jobs);
	o->pending = 0;
	kw_list_init(&o->touched);
}

/* ---- jobs ---- */

static struct kwd_job *job_new(struct kwd_executor *ex, struct kwd_job_owner *o, uint32_t id,
                               const struct kwd_exec_op *op)
{
	struct kwd_job *job = calloc(1, sizeof(*job) + op->in.len);
	if (job == NULL)
		return NULL;
	uint8_t *in = (uint8_t *)(job + 1);
	if (op->in.len > 0)
		memcpy(in, op->in.data, op->in.len);
	job->op = *op;
	job->op.in = (struct kw_bytes){in, op->in.len};
	job->ex = ex;
	job->owner = o;
	job->gen = kwd_gen_ref(ex->gen);
	job->id = id;
	job->submit_ns = kw_now_ns();
	kw_list_add_tail(&o->jobs, &job->link);
	o->pending++;
	ex->stats.pending++;
	return job;
}

/* job_free wipes the request and the answer (a decrypted block is secret). */
static void job_free(struct kwd_job *job)
{
	kwd_exec_result_cleanse(&job->res);
	OPENSSL_cleanse(job + 1, job->op.in.len);
	kwd_gen_unref(job->gen);
	free(job);
}

/* job_unlink takes job out of its owner's (or the batch) list. */
static void job_unlink(struct kwd_job *job)
{
	if (kw_list_linked(&job->link))
		kw_list_del(&job->link);
	if (job->owner != NULL) {
		job->owner->pending--;
		job->owner = NULL;
	}
	job->ex->stats.pending--;
}

/* deliver tells job's owner its answer and frees the job. */
static void deliver(struct kwd_executor *ex, struct kwd_job *job)
{
	struct kwd_job_owner *o = job->owner;
	if (o != NULL) {
		if (!kw_list_linked(&o->touched))
			kw_list_add_tail(&ex->round, &o->touched);
		job_unlink(job);
		o->ops->done(o, job);
	} else {
		job_unlink(job);
	}
	job_free(job);
}

/* end_round settles every owner the round touched, once. */
static void end_round(struct kwd_executor *ex)
{
	while (!kw_list_empty(&ex->round)) {
		struct kwd_job_owner *o =
		    kw_container_of(ex->round.next, struct kwd_job_owner, touched);
		kw_list_del(&o->touched);
		o->ops->settle(o);
	}
}

/* ---- device completions ---- */

struct kwd_executor *kwd_job_finish_quiet(struct kwd_job *job)
{
	struct kwd_executor *ex = job->ex;
	/* Counted before job can be taken: kwd_executor_free waits for the wake-up too, so
	 * ex outlives the write to its eventfd. */
	atomic_fetch_add_explicit(&ex->waking, 1, memory_order_seq_cst);
	struct kwd_job *head = atomic_load_explicit(&ex->done, memory_order_relaxed);
	do {
		job->done_next = head;
	} while (!atomic_compare_exchange_weak_explicit(&ex->done, &head, job, memory_order_release,
	                                                memory_order_relaxed));
	/* Only the push onto an empty stack owes a wake-up: the loop empties it when woken. */
	if (head == NULL)
		return ex;
	atomic_fetch_sub_explicit(&ex->waking, 1, memory_order_seq_cst);
	return NULL;
}

void kwd_executor_wake(struct kwd_executor *ex)
{
	uint64_t one = 1;
	/* Can only fail with the counter saturated, which means a wake-up is due anyway. */
	ssize_t w = write(ex->efd, &one, sizeof(one));
	(void)w;
	atomic_fetch_sub_explicit(&ex->waking, 1, memory_order_seq_cst); /* ex may go now */
}

void kwd_job_finish(struct kwd_job *job)
{
	struct kwd_executor *ex = kwd_job_finish_quiet(job);
	if (ex != NULL)
		kwd_executor_wake(ex);
}

/* take_finished delivers every finished device job, oldest first. */
static void take_finished(struct kwd_executor *ex)
{
	struct kwd_job *stack = atomic_exchange_explicit(&ex->done, NULL, memory_order_acquire);
	struct kwd_job *fifo = NULL;
	while (stack != NULL) {
		struct kwd_job *next = stack->done_next;
		stack->done_next = fifo;
		fifo = stack;
		stack = next;
	}
	while (fifo != NULL) {
		struct kwd_job *next = fifo->done_next;
		atomic_fetch_sub_explicit(&ex->in_device, 1, memory_order_relaxed);
		deliver(ex, fifo);
		fifo = next;
	}
	end_round(ex);
}

static void on_efd(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	(void)loop;
	(void)events;
	uint64_t n;
	/* Read before taking the stack: a push after the read writes again. */
	ssize_t r = read(fd, &n, sizeof(n));
	(void)r;
	take_finished(arg);
}

/* ---- batches ---- */

/*
 * run_chunk computes and delivers the first n (<= BATCH_CHUNK) gathered jobs.
 * Each chunk is delivered before the next is computed, so its answers leave
 * as soon as they are ready.
 */
static void run_chunk(struct kwd_executor *ex, size_t n)
{
	struct kwd_job *jobs[BATCH_CHUNK];
	struct kw_list chunk;
	kw_list_init(&chunk);
	for (size_t i = 0; i < n; i++) {
		jobs[i] = kw_container_of(ex->batch.next, struct kwd_job, link);
		kw_list_del(&jobs[i]->link);
		kw_list_add_tail(&chunk, &jobs[i]->link);
	}
	ex->nbatch -= n;
	ex->batcher->run(ex->batcher, jobs, n);
	while (!kw_list_empty(&chunk)) {
		struct kwd_job *job = kw_container_of(chunk.next, struct kwd_job, link);
		kw_list_del(&job->link);
		deliver(ex, job);
	}
	end_round(ex);
}

/*
 * run_batch computes what the turn gathered, a chunk at a time, for at most
 * BATCH_SLICE_NS: a flood of batched requests (an RSA-4096 batch takes
 * milliseconds) must not hold the loop any more than an inline one may
 * (conn.c's slice), so what is left waits for the next turn, after the
 * other connections' I/O; the zero-delay timer keeps the loop from
 * sleeping meanwhile.
 */
static void run_batch(struct kw_loop *loop, void *arg)
{
	struct kwd_executor *ex = arg;
	uint64_t start = kw_now_ns();
	while (ex->nbatch > 0) {
		run_chunk(ex, ex->nbatch < BATCH_CHUNK ? ex->nbatch : BATCH_CHUNK);
		if (ex->nbatch > 0 && kw_now_ns() - start >= BATCH_SLICE_NS &&
		    kw_timer_start_us(loop, &ex->more, 0) == 0)
			break; /* if the timer cannot be armed, finish now rather than stall */
	}
}

/* on_more only keeps the loop from sleeping: the hook runs the rest next turn, after I/O. */
static void on_more(struct kw_loop *loop, void *arg)
{
	(void)loop;
	(void)arg;
}

/* ---- the executor ---- */

int kwd_executor_new(struct kwd_executor **out, struct kw_loop *loop)
{
	struct kwd_executor *ex = calloc(1, sizeof(*ex));
	if (ex == NULL)
		return -ENOMEM;
	ex->loop = loop;
	ex->efd = -1;
	kw_list_init(&ex->batch);
	kw_list_init(&ex->round);
	atomic_init(&ex->done, NULL);
	atomic_init(&ex->in_device, 0);
	atomic_init(&ex->waking, 0);
	kw_hook_init(&ex->hook, run_batch, ex);
	kw_timer_init(&ex->more, on_more, ex);
	kw_io_init(&ex->efd_io, on_efd, ex);
	int rc = kwd_exec_new(&ex->exec);
	if (rc < 0)
		goto err;
	ex->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (ex->efd < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = kw_io_start(loop, &ex->efd_io, ex->efd, KW_EV_READ)) < 0)
		goto err;
	kw_hook_add(loop, &ex->hook);
	*out = ex;
	return 0;
err:
	kwd_executor_free(ex);
	return rc;
}

void kwd_executor_free(struct kwd_executor *ex)
{
	if (ex == NULL)
		return;
	/* Devices still hold jobs that point here: wait until they are all back. */
	while (atomic_load_explicit(&ex->in_device, memory_order_seq_cst) > 0 ||
	       atomic_load_explicit(&ex->waking, memory_order_seq_cst) > 0) {
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		take_finished(ex);
	}
	while (!kw_list_empty(&ex->batch)) {
		struct kwd_job *job = kw_container_of(ex->batch.next, struct kwd_job, link);
		job_unlink(job);
		job_free(job);
	}
	if (kw_list_linked(&ex->hook.link))
		kw_hook_remove(ex->loop, &ex->hook);
	kw_timer_stop(ex->loop, &ex->more);
	if (ex->efd >= 0) {
		kw_io_stop(ex->loop, &ex->efd_io);
		close(ex->efd);
	}
	kwd_exec_free(ex->exec);
	free(ex);
}

void kwd_executor_use(struct kwd_executor *ex, struct kwd_gen *g)
{
	if (ex->gen != g)
		kwd_exec_reset(ex->exec);
	ex->gen = g;
}

void kwd_executor_set_batcher(struct kwd_executor *ex, struct kwd_batcher *b)
{
	ex->batcher = b;
}

/* to_device hands op to its key's device; false if the device refused it. */
static bool to_device(struct kwd_executor *ex, struct kwd_job_owner *o, uint32_t id,
                      const struct kwd_exec_op *op, struct kwd_exec_result *res)
{
	struct kwd_job *job = job_new(ex, o, id, op);
	if (job == NULL) {
		kwd_exec_result_error(res, KW_ERR_INTERNAL);
		return false;
	}
	atomic_fetch_add_explicit(&ex->in_device, 1, memory_order_relaxed);
	int rc = op->key->device->submit(op->key->device, job);
	if (rc == 0) {
		ex->stats.device_ops++;
		return true;
	}
	atomic_fetch_sub_explicit(&ex->in_device, 1, memory_order_relaxed);
	ex->stats.device_refused++;
	kw_debug("a device refused request %u: %s", (unsigned)id, kw_strerror(rc));
	job_unlink(job);
	job_free(job);
	kwd_exec_result_error(res, KW_ERR_INTERNAL);
	return false;
}

enum kwd_submit kwd_executor_submit(struct kwd_executor *ex, struct kwd_job_owner *o, uint32_t id,
                                    const struct kw_msg *m, struct kwd_exec_result *res,
                                    uint64_t *inline_ns)
{
	struct kwd_exec_op op;
	*inline_ns = 0;
	if (kwd_exec_prepare(ex->gen->ks, m, &op, res) != 0)
		return KWD_ANSWERED;
	if (op.key->device != NULL)
		return to_device(ex, o, id, &op, res) ? KWD_PENDING : KWD_ANSWERED;
	if (ex->batcher != NULL && ex->batcher->takes(ex->batcher, &op)) {
		struct kwd_job *job = job_new(ex, o, id, &op);
		if (job != NULL) {
			/* From the owner's list to the batch: detach finds it by owner. */
			kw_list_del(&job->link);
			kw_list_add_tail(&ex->batch, &job->link);
			ex->nbatch++;
			ex->stats.batched_ops++;
			return KWD_PENDING;
		}
		/* No memory for a job: compute it inline instead. */
	}
	uint64_t t0 = kw_now_ns();
	kwd_exec_key(ex->exec, ex->gen->ks, &op, res);
	*inline_ns = kw_now_ns() - t0;
	ex->stats.inline_ops++;
	return KWD_ANSWERED;
}

void kwd_executor_detach(struct kwd_executor *ex, struct kwd_job_owner *o)
{
	/* Device jobs are in o->jobs: they come back later and are dropped then;
	 * the mark lets the device skip those it has not started. */
	while (!kw_list_empty(&o->jobs)) {
		struct kwd_job *job = kw_container_of(o->jobs.next, struct kwd_job, link);
		kw_list_del(&job->link);
		if (o->ops->dropped != NULL)
			o->ops->dropped(o, job);
		atomic_store_explicit(&job->cancelled, true, memory_order_relaxed);
		job->owner = NULL;
		o->pending--;
	}
	/* Batched jobs are in the batch: drop them now. */
	for (struct kw_list *l = ex->batch.next, *next; l != &ex->batch; l = next) {
		next = l->next;
		struct kwd_job *job = kw_container_of(l, struct kwd_job, link);
		if (job->owner == o) {
			kw_list_del(&job->link);
			if (o->ops->dropped != NULL)
				o->ops->dropped(o, job);
			ex->nbatch--;
			job->owner->pending--;
			job->owner = NULL;
			ex->stats.pending--;
			job_free(job);
		}
	}
	if (kw_list_linked(&o->touched))
		kw_list_del(&o->touched);
}

void kwd_executor_stats(const struct kwd_executor *ex, struct kwd_executor_stats *out)
{
	*out = ex->stats;
}
