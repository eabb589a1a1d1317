/*
 * keyway/backend.h - the local offload backends (inline, threads), the
 * wake-up protocol of ring backends, and the per-thread backend binding.
 *
 * Both implement struct kw_backend_ops (keyway/offload.h) and compute with
 * kw_op_compute on op->pkey.
 *
 * inline: the no-offload baseline. submit computes on the calling thread and
 * completes the op before it returns (done runs inside submit), so a caller
 * that finds kw_op_is_done(op) after submit must not wait or pause: the
 * result is there. poll does nothing; nothing is ever in flight.
 *
 * threads: a software accelerator. N crypto threads, each fed by a bounded
 * single-producer ring from the owning thread and answering on a bounded
 * single-producer ring back; no lock on either path. A crypto thread takes
 * what is queued for it, up to KW_RSA_BATCH_MAX ops at a time, and computes
 * the RSA private-key ops among them that allow it (op->rsa_batch) together
 * in a multi-buffer batch when there are enough (kw_op_compute_many); it
 * never waits for a batch to fill. submit returns -EAGAIN
 * when every ring is full; poll(max), on the owning thread, completes
 * finished ops (done runs there). An op's in[] and pkey are read by a crypto
 * thread until the op completes, even if its owner detached: keep them in
 * memory the op owns (freed by release), not in the submitter's frame.
 *
 * Waking a sleeping owner: a ring backend has an eventfd (kw_backend_wake_fd)
 * that crypto threads write only when the owner armed it. The owner, about
 * to sleep with ops in flight, calls kw_backend_arm: it raises a "sleeping"
 * flag and re-checks the completion rings; false means completions are
 * already waiting (poll instead of sleeping). After the wait returns it
 * calls kw_backend_disarm. A crypto thread that pushes a completion while
 * the flag is up takes it down and writes the eventfd once, so an armed
 * sleep costs at most one write and a busy owner costs none.
 */
#ifndef KEYWAY_BACKEND_H
#define KEYWAY_BACKEND_H

#include <stdbool.h>
#include <stdint.h>

#include "keyway/offload.h"

/* kw_backend_inline_new makes an inline backend; 0 or -ENOMEM. */
int kw_backend_inline_new(struct kw_backend **out);

struct kw_threads_stats {
	uint64_t submitted;    /* ops accepted */
	uint64_t completed;    /* ops completed by poll */
	uint64_t eagain;       /* submits refused because the rings were full */
	uint64_t wakeups;      /* eventfd writes by crypto threads */
	uint64_t thread_kicks; /* futex wakes of idle crypto threads */
	/* Multi-buffer RSA on the crypto threads (ops with rsa_batch set, keyway/offload.h). */
	uint64_t rsa_batches;         /* batches run */
	uint64_t rsa_batch_lanes;     /* ops computed in them */
	uint64_t rsa_batch_fallbacks; /* batchable ops sent to OpenSSL: too few queued to pay */
};

/*
 * kw_backend_threads_new starts nthreads crypto threads (1..64), each with
 * request and completion rings of ring_size slots (rounded up to a power of
 * two, 2..65536), so at most nthreads * ring_size ops are in flight.
 * 0, -EINVAL or -errno (threads, eventfd).
 */
int kw_backend_threads_new(struct kw_backend **out, unsigned nthreads, unsigned ring_size);

/* kw_backend_threads_stats reads the counters (owning thread). -EINVAL if b is not threads. */
int kw_backend_threads_stats(const struct kw_backend *b, struct kw_threads_stats *out);

/* kw_backend_wake_fd is the eventfd to watch for readability, or -1 if b needs none. */
int kw_backend_wake_fd(const struct kw_backend *b);
/*
 * kw_backend_arm: see above. true: sleep (the eventfd will be written when a
 * completion arrives); false: completions are pending, poll now. Always true
 * for a backend without a wake fd.
 */
bool kw_backend_arm(struct kw_backend *b);
void kw_backend_disarm(struct kw_backend *b);
/* kw_backend_drain_wake_fd empties the eventfd after it fired (nonblocking). */
void kw_backend_drain_wake_fd(struct kw_backend *b);

/* kw_backend_inflight_all sums kw_backend_inflight over every kind. */
unsigned kw_backend_inflight_all(const struct kw_backend *b);

/*
 * A thread-local binding: the worker that owns a backend binds it, and the
 * keyway provider, running inside that worker's ASYNC_JOB with external
 * polling, finds it with kw_backend_thread(). This works when the provider
 * is linked into the same program (registered built-in), which shares this
 * library's thread-local. NULL unbinds.
 */
void kw_backend_bind_thread(struct kw_backend *b);
struct kw_backend *kw_backend_thread(void);

/*
 * kw_op_compute_thread_cleanup frees the calling thread's cache of OpenSSL
 * contexts (done automatically at thread exit).
 */
void kw_op_compute_thread_cleanup(void);

#endif
