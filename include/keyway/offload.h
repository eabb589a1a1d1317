/*
 * keyway/offload.h - the offload core: an operation object and the small
 * interface every accelerator backend implements (inline, threads, keyless).
 *
 * QTLS's four stages map onto it: pre-processing = kw_backend_submit from the
 * connection's ASYNC_JOB; response retrieval = kw_backend_poll (or socket
 * readiness for the keyless backend); notification = the op's done callback;
 * post-processing = the resumed job reading op->status and op->out.
 *
 * Threading: a backend instance belongs to one thread (a proxy worker, or the
 * provider's I/O thread). submit, poll and inflight are called on that thread
 * only, and done callbacks run on it. Handing ops over from other threads is
 * the caller's business (see the provider's queue).
 *
 * Lifetime: an op is reference counted. Whoever submits holds one reference
 * and the backend takes another for as long as the op is in flight; the
 * backend drops it after calling done. An owner that goes away early (an SSL
 * freed while its job is paused) calls kw_op_detach, which waits out a done
 * callback already running and makes sure none runs afterwards, then drops
 * its reference; the late completion touches nothing but the op itself.
 */
#ifndef KEYWAY_OFFLOAD_H
#define KEYWAY_OFFLOAD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/protocol.h"

/* What an op costs, for in-flight accounting and polling heuristics. */
enum kw_op_kind {
	KW_OPK_ASYM,  /* private-key sign or decrypt */
	KW_OPK_OTHER, /* ping and housekeeping */
	KW_OPK_COUNT
};

enum kw_op_state {
	KW_OPSTATE_NEW = 0,    /* not submitted */
	KW_OPSTATE_INFLIGHT,   /* accepted by a backend */
	KW_OPSTATE_COMPLETING, /* a completion won the race and is writing the status */
	KW_OPSTATE_DONE,       /* result written; done callback (if any) has run or is running */
};

struct kw_op;
typedef void (*kw_op_done_fn)(struct kw_op *op, void *arg);

struct kw_op {
	/* --- request, set before submit --- */
	enum kw_op_kind kind;
	uint8_t opcode;          /* keyless opcode (KW_OP_RSA_SIGN_SHA256, ...) */
	uint8_t ski[KW_SKI_LEN]; /* key identifier, for remote backends */
	EVP_PKEY *pkey;          /* private key, for local backends (not owned) */
	const uint8_t
	    *in; /* digest, message or ciphertext (owned by the submitter; valid until done) */
	size_t in_len;
	uint64_t deadline_ns; /* CLOCK_MONOTONIC; 0 = the backend's default */
	bool rsa_batch;       /* a crypto thread may compute it in a multi-buffer RSA batch */

	/* --- result, written by the backend before done --- */
	int status; /* 0, -KW_EREMOTE (see remote_error), -KW_ETIMEOUT, -KW_ECRYPTO, ... */
	uint8_t remote_error; /* enum kw_proto_error when status == -KW_EREMOTE */
	uint8_t out[KW_RESULT_MAX];
	size_t out_len;

	/* --- completion --- */
	kw_op_done_fn done; /* called once on the backend's thread; NULL once detached */
	void *done_arg;
	void (*release)(
	    struct kw_op *op); /* frees the op when the last reference goes; NULL: not heap */

	/* --- bookkeeping (backends and kw_op_* only) --- */
	_Atomic int state;   /* enum kw_op_state */
	atomic_flag cb_lock; /* held while done runs, and by kw_op_detach */
	_Atomic unsigned refs;
	struct kw_op *next; /* intrusive link for backend queues */
	uint64_t submit_ns;
	unsigned attempts; /* tries so far (keyless retries) */
	int server;        /* keyless: index of the keyserver tried last; -1: none */
};

/* kw_op_init zeroes op and sets one reference (the submitter's). */
void kw_op_init(struct kw_op *op, enum kw_op_kind kind, uint8_t opcode);
void kw_op_ref(struct kw_op *op);
/* kw_op_unref drops a reference; at zero it wipes out[] and calls release. */
void kw_op_unref(struct kw_op *op);
/* kw_op_accept marks op in flight and takes the backend's reference; for backends' submit. */
void kw_op_accept(struct kw_op *op);
/*
 * kw_op_complete records status and calls done (if still attached) exactly
 * once; for backends. The backend drops its reference afterwards.
 */
void kw_op_complete(struct kw_op *op, int status);
/*
 * kw_op_detach stops done from being called (waiting for a running call to
 * end). Never call it from inside done.
 */
void kw_op_detach(struct kw_op *op);
static inline bool kw_op_is_done(struct kw_op *op)
{
	return atomic_load_explicit(&op->state, memory_order_acquire) == KW_OPSTATE_DONE;
}

struct kw_backend;

struct kw_backend_ops {
	const char *name; /* "inline", "threads", "keyless" */
	/*
	 * submit accepts op (taking a reference) and returns 0, or -EAGAIN when
	 * the backend is full (the caller waits for a completion to free a
	 * slot), or another negative code when the op cannot be run at all.
	 * If submit fails, done is never called.
	 */
	int (*submit)(struct kw_backend *b, struct kw_op *op);
	/* poll completes up to max finished ops, calling their done callbacks; returns how many. */
	int (*poll)(struct kw_backend *b, unsigned max);
	/* inflight counts accepted, not yet completed ops of a kind. */
	unsigned (*inflight)(const struct kw_backend *b, enum kw_op_kind kind);
	void (*free)(struct kw_backend *b);
};

/*
 * KW_BACKEND_OPS(p, label) defines `static const struct kw_backend_ops
 * p##_ops` named label from the functions p##_submit, p##_poll,
 * p##_inflight and p##_free, so every backend's table reads the same.
 */
#define KW_BACKEND_OPS(p, label)                                                                   \
	static const struct kw_backend_ops p##_ops = {.name = (label),                             \
	                                              .submit = p##_submit,                        \
	                                              .poll = p##_poll,                            \
	                                              .inflight = p##_inflight,                    \
	                                              .free = p##_free}

struct kw_backend {
	const struct kw_backend_ops *ops;
};

static inline int kw_backend_submit(struct kw_backend *b, struct kw_op *op)
{
	return b->ops->submit(b, op);
}
static inline int kw_backend_poll(struct kw_backend *b, unsigned max)
{
	return b->ops->poll(b, max);
}
static inline unsigned kw_backend_inflight(const struct kw_backend *b, enum kw_op_kind kind)
{
	return b->ops->inflight(b, kind);
}
static inline void kw_backend_free(struct kw_backend *b)
{
	if (b != NULL)
		b->ops->free(b);
}

/*
 * kw_op_compute runs op synchronously with OpenSSL on op->pkey (what the
 * inline backend does, and what crypto threads do): RSA PKCS#1/PSS, ECDSA,
 * Ed25519 signatures and raw RSA decryption, with the keyless opcode's
 * semantics. Returns and records the status (0 or -KW_ECRYPTO / -EINVAL).
 */
int kw_op_compute(struct kw_op *op);

struct kw_rsa_batch_counts;

/*
 * kw_op_compute_many computes n ops (n <= KW_RSA_BATCH_MAX, keyway/rsa_batch.h)
 * as kw_op_compute does each, with the same results, except that the RSA
 * private-key ops among them that allow it (op->rsa_batch, an RSA key the
 * multi-buffer kernel takes, a CPU that runs it) are computed together with
 * kw_rsa_batch_run when there are enough of them to pay a batch
 * (kw_rsa_batch_min_lanes). counts (may be NULL) gains what was batched and
 * what went to OpenSSL for want of lanes.
 */
void kw_op_compute_many(struct kw_op *const *ops, size_t n, struct kw_rsa_batch_counts *counts);
/* kw_op_batch_totals: the counts of every kw_op_compute_many of the process, any thread. */
void kw_op_batch_totals(struct kw_rsa_batch_counts *out);

#endif
