/*
 * executor.h - keywayd's one request executor: every request a worker's
 * connections decode goes through the worker's executor (loop thread only),
 * which answers it one of three ways:
 *
 *  - inline: at once on the loop thread (pings, errors, file keys); the
 *    connection's time slice (conn.c) bounds how long one client holds it;
 *  - device: handed to the key's device (struct kwd_device, e.g. a pool of
 *    PKCS#11 token threads), which computes it on another thread and hands it
 *    back with kwd_job_finish; the loop never waits on a device;
 *  - batch: set aside while the loop turn reads, then computed together with
 *    the other connections' requests for batched keys before the loop sleeps
 *    (struct kwd_batcher, e.g. multi-buffer RSA).
 *
 * A request answered later is a kwd_job. Its answer reaches the connection
 * through the owner's done callback, possibly out of order (each answer
 * carries its request ID, as the keyless protocol allows). A job holds a
 * reference to the key generation it was submitted under, so a reload while
 * it runs changes nothing for it. A connection that closes detaches its jobs:
 * a device skips those it has not started (kwd_job_cancelled), and their
 * results are wiped and dropped when they come back.
 */
#ifndef KEYWAYD_EXECUTOR_H
#define KEYWAYD_EXECUTOR_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "exec.h"
#include "gen.h"
#include "keyway/list.h"
#include "keyway/loop.h"
#include "keyway/protocol.h"

struct kwd_executor;
struct kwd_job_owner;

/* A request whose answer comes later. */
struct kwd_job {
	/* For whoever computes it (device, batcher): read op, set res. */
	struct kwd_exec_op op;      /* op.in points at a copy the job owns */
	struct kwd_exec_result res; /* the answer (kwd_exec_result_output / _error) */
	uint64_t exec_ns;           /* computing time to account to it (set by who computes) */
	void *device_data;          /* free for the device's use */
	atomic_bool cancelled;      /* its owner detached: see kwd_job_cancelled */

	/* The executor's. */
	struct kwd_executor *ex;
	struct kwd_job_owner *owner; /* NULL once detached */
	struct kwd_gen *gen;         /* keeps op.key alive */
	uint32_t id;
	uint64_t submit_ns;
	struct kw_list link;       /* in the owner's jobs, or the batch being gathered */
	struct kwd_job *done_next; /* in the executor's lock-free stack of finished jobs */
};

/*
 * A device computes jobs off the loop thread. submit queues job and returns 0
 * (the device then sets job->res and calls kwd_job_finish(job) exactly once,
 * from any thread), or a negative errno when it cannot take it (queue full,
 * device gone): the request is then answered KW_ERR_INTERNAL at once.
 */
struct kwd_device {
	int (*submit)(struct kwd_device *dev, struct kwd_job *job);
};

/*
 * A busy device hands finished jobs back in bursts, each ending no later than
 * KWD_DEVICE_BURST_NS after the first answer it holds unless one operation
 * alone takes longer: so while it has work queued, bursts of operations that
 * take at most this long come back at most 2 * KWD_DEVICE_BURST_NS apart.
 * Connections rely on it to read in step with the bursts (conn.c).
 *
 * Each burst wakes the loop: an eventfd write, two context switches on a core
 * the device shares, a response write and a read. That costs the loop 50-60 us
 * of CPU on a 2-vCPU guest, 5-10 % of a 650 us RSA-2048 sign on SoftHSM2 when
 * bursts hold only one or two answers; bursts of 2 ms hold three or four. The
 * wait it adds is paid only while the device has a queue, which already makes
 * every request wait at least one operation.
 */
#define KWD_DEVICE_BURST_NS 2000000u /* 2 ms */

/*
 * A batcher computes jobs of the keys it takes together. takes is asked at
 * submission (loop thread); run computes jobs[0..n) -- every job it took
 * during the turn -- setting each res, on the loop thread before it sleeps.
 */
struct kwd_batcher {
	bool (*takes)(struct kwd_batcher *b, const struct kwd_exec_op *op);
	void (*run)(struct kwd_batcher *b, struct kwd_job **jobs, size_t n);
};

/* What the connection side is told (loop thread). */
struct kwd_job_owner_ops {
	/* done: job (for o) is answered; encode job->res, which is wiped after. */
	void (*done)(struct kwd_job_owner *o, struct kwd_job *job);
	/* settle: a round of answers for o is complete; write them out. */
	void (*settle)(struct kwd_job_owner *o);
	/* dropped (optional): o detaches while job is unanswered; it will never be
	 * answered to o. Called from kwd_executor_detach, job->op still valid. */
	void (*dropped)(struct kwd_job_owner *o, const struct kwd_job *job);
};

/* Embedded in whatever submits requests (a connection). */
struct kwd_job_owner {
	const struct kwd_job_owner_ops *ops;
	struct kw_list jobs;    /* its jobs not yet answered */
	unsigned pending;       /* how many */
	struct kw_list touched; /* in the executor's round of owners to settle */
};

/* kwd_job_owner_init prepares o with no jobs. */
void kwd_job_owner_init(struct kwd_job_owner *o, const struct kwd_job_owner_ops *ops);

/*
 * kwd_executor_new makes the executor of the loop's worker (watching an
 * eventfd for device completions). 0, or -errno.
 */
int kwd_executor_new(struct kwd_executor **out, struct kw_loop *loop);
/*
 * kwd_executor_free frees ex once every job handed to a device has come
 * back (it waits for them; devices must still be running). NULL ok.
 */
void kwd_executor_free(struct kwd_executor *ex);

/*
 * kwd_executor_use makes g (borrowed: the caller keeps a reference for as
 * long as it is in use) the generation new requests are answered with, and
 * drops the inline context cache of the previous one.
 */
void kwd_executor_use(struct kwd_executor *ex, struct kwd_gen *g);

/* kwd_executor_set_batcher: where batched keys go (NULL: nowhere, all inline). */
void kwd_executor_set_batcher(struct kwd_executor *ex, struct kwd_batcher *b);

enum kwd_submit {
	KWD_ANSWERED, /* *res holds the answer now */
	KWD_PENDING,  /* o's done callback will have it */
};

/*
 * kwd_executor_submit answers request id of o (m's payload is copied if
 * needed). With KWD_ANSWERED the caller encodes *res and wipes it
 * (kwd_exec_result_cleanse); *inline_ns is the time spent computing it.
 */
enum kwd_submit kwd_executor_submit(struct kwd_executor *ex, struct kwd_job_owner *o, uint32_t id,
                                    const struct kw_msg *m, struct kwd_exec_result *res,
                                    uint64_t *inline_ns);

/* kwd_executor_detach: o goes away; its jobs are dropped when they come back (each
 * first handed to o's dropped hook, if any). */
void kwd_executor_detach(struct kwd_executor *ex, struct kwd_job_owner *o);

/*
 * kwd_job_cancelled (any thread): job's owner has detached, so no one will
 * read its answer; a device should finish it without computing it. The job
 * itself stays valid until kwd_job_finish, its owner may already be freed.
 */
static inline bool kwd_job_cancelled(const struct kwd_job *job)
{
	return atomic_load_explicit(&job->cancelled, memory_order_relaxed);
}

/* kwd_job_finish hands a device's finished job back to its executor (any thread). */
void kwd_job_finish(struct kwd_job *job);
/*
 * kwd_job_finish_quiet hands job back like kwd_job_finish but does not wake the
 * executor: it returns the executor the caller must wake (kwd_executor_wake) once
 * it has handed back the rest of its burst, or NULL if a wake-up is already due.
 * A burst handed back in one go wakes the loop once, instead of letting it take
 * the first answers while the rest are still being handed back.
 */
struct kwd_executor *kwd_job_finish_quiet(struct kwd_job *job);
/* kwd_executor_wake pays the wake-up kwd_job_finish_quiet returned ex for, exactly once
 * (any thread); ex may be freed as soon as it returns. */
void kwd_executor_wake(struct kwd_executor *ex);

/* Counters, loop thread. */
struct kwd_executor_stats {
	uint64_t inline_ops, device_ops, batched_ops, device_refused;
	uint64_t pending; /* jobs submitted and not yet answered */
};
void kwd_executor_stats(const struct kwd_executor *ex, struct kwd_executor_stats *out);

#endif
