/*
 * device.h - the PKCS#11 device threads: token operations run here, never on
 * a worker's loop.
 *
 * A kwd_devpool is N threads taking requests from one bounded FIFO. Each
 * thread runs a request with kwd_p11_run, which borrows a session of the
 * key's token (so a thread holds at most one session at a time and a token
 * with fewer sessions than threads makes the extra threads wait on the token,
 * not the loop). When it is done the thread calls the request's done
 * callback, on the device thread: the submitter hands the result back to its
 * loop from there (keywayd's executor pushes it and writes its eventfd).
 *
 * Counters (operations by result, a latency histogram, the queue depth) are
 * kept here for the metrics page.
 */
#ifndef KEYWAYD_DEVICE_H
#define KEYWAYD_DEVICE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "executor.h"
#include "keyway/opcodes.h"
#include "keyway/protocol.h"
#include "metrics.h"
#include "pkcs11.h"

/* One token operation. The submitter owns it (and in, out) until done runs. */
struct kwd_devreq {
	const struct kwd_p11_key *key;
	const struct kw_opcode_desc *desc;
	const uint8_t *in;
	size_t in_len;
	uint8_t *out; /* out_cap bytes */
	size_t out_cap;

	/* Set by the device thread before done. */
	enum kw_proto_error error; /* KW_ERR_NONE, KW_ERR_CRYPTO or KW_ERR_INTERNAL */
	size_t out_len;
	uint64_t exec_ns; /* time on the token */

	void (*done)(struct kwd_devreq *r); /* on the device thread */
	/*
	 * NULL, or asked (on the device thread) just before r would run: true
	 * when no one wants the answer any more (its connection closed). r is
	 * then not run on the token -- error KW_ERR_INTERNAL, counted as
	 * KWD_DEV_CANCELLED -- and done is called as usual.
	 */
	bool (*cancelled)(const struct kwd_devreq *r);
	void *arg;               /* the submitter's */
	struct kwd_devreq *next; /* the pool's queue */
	uint64_t queued_ns;
};

/*
 * Result labels of the operation counter. The results before KWD_DEV_NTIMED
 * ran on the token and have a latency histogram; a cancelled request never
 * reached the token.
 */
enum kwd_dev_result {
	KWD_DEV_OK = 0,
	KWD_DEV_CRYPTO_ERROR,
	KWD_DEV_INTERNAL_ERROR,
	KWD_DEV_NTIMED,
	KWD_DEV_CANCELLED = KWD_DEV_NTIMED,
	KWD_DEV_NRES
};

struct kwd_devpool_stats {
	uint64_t ops[KWD_DEV_NRES];
	uint64_t queued; /* gauge: submitted and not yet started */
	uint64_t running;
};

struct kwd_devpool;

/*
 * kwd_devpool_new starts nthreads device threads (0: one per online core)
 * with a queue of at most queue_cap waiting requests. 0 or -errno.
 */
int kwd_devpool_new(unsigned nthreads, size_t queue_cap, struct kwd_devpool **out);

/*
 * kwd_devpool_free runs what is still queued, then stops and joins the
 * threads. Submitters must have stopped submitting. NULL ok.
 */
void kwd_devpool_free(struct kwd_devpool *p);

/* kwd_devpool_threads is how many threads p runs. */
unsigned kwd_devpool_threads(const struct kwd_devpool *p);

/*
 * kwd_devpool_submit queues r (any thread, never blocks). 0, or -EAGAIN when
 * the queue is full (the caller answers KW_ERR_INTERNAL at once).
 */
int kwd_devpool_submit(struct kwd_devpool *p, struct kwd_devreq *r);

/* kwd_devpool_stats reads the counters (any thread). */
void kwd_devpool_stats(struct kwd_devpool *p, struct kwd_devpool_stats *out);

/*
 * kwd_devpool_latency copies the latency histogram of token operations (time
 * on the token, per result below KWD_DEV_NTIMED; buckets as metrics.h's, not
 * cumulative).
 */
void kwd_devpool_latency(struct kwd_devpool *p, enum kwd_dev_result res, uint64_t *buckets,
                         uint64_t *sum_ns);

/*
 * The pool as the executor's device kind (executor.h): a job's operation
 * runs on a device thread, its answer is written straight into job->res and
 * the job handed back with kwd_job_finish_quiet, each executor woken once per
 * burst (kwd_executor_wake: the eventfd wakes the worker's loop). A job its connection has given up
 * on (kwd_job_cancelled) is skipped rather than run. Token keys' kwd_key.device points here.
 */
struct kwd_p11_device {
	struct kwd_device dev;
	struct kwd_devpool *pool;
};

/* kwd_p11_device_init makes d the device kind for pool (which outlives every job). */
void kwd_p11_device_init(struct kwd_p11_device *d, struct kwd_devpool *pool);

#endif
