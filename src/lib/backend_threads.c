/*
 * backend_threads.c - the threads backend: N crypto threads, each fed by a
 * bounded single-producer/single-consumer ring from the owning thread and
 * answering on another one back (see keyway/backend.h).
 *
 * Rings: the owner is the only producer of a request ring and the only
 * consumer of a completion ring; a crypto thread the opposite. So each index
 * has one writer, a release store publishes the slot and an acquire load
 * sees it; no lock and no read-modify-write on the hot path. A crypto
 * thread never has more ops than the owner gave it (t->outstanding <=
 * ring size), so its completion ring cannot overflow.
 *
 * Sleeping, both ways, is a flag raised before a last look at the ring
 * (a store/load pair separated by seq_cst fences on each side, so either the
 * sleeper sees the new item or the producer sees the flag):
 * - an idle crypto thread raises t->sleeping and waits on it as a futex;
 *   the owner's submit takes the flag down and wakes it once;
 * - the owner raises owner_sleeping (kw_backend_arm); the crypto thread that
 *   pushes a completion takes it down and writes the eventfd once.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/ring.h"
#include "keyway/rsa_batch.h"
#include "keyway/rsa_batch_plan.h"

#define CACHELINE 64
#define IDLE_SPINS 256 /* ring checks before an idle crypto thread sleeps */

struct crypto_thread {
	struct kw_ring req;                            /* owner -> crypto thread */
	struct kw_ring done;                           /* crypto thread -> owner */
	_Alignas(CACHELINE) _Atomic uint32_t sleeping; /* futex word: 1 while waiting for work */
	struct threads_backend *b;
	pthread_t tid;
	bool started;
	unsigned outstanding; /* owner only: submitted, not yet polled */
};

struct threads_backend {
	struct kw_backend base; /* first: the ops pointer */
	struct crypto_thread *t;
	unsigned n;
	uint32_t ring_size;
	int efd;
	_Alignas(CACHELINE) _Atomic int owner_sleeping;
	_Atomic bool stop;
	_Atomic uint64_t wakeups;
	_Atomic uint64_t rsa_batches, rsa_batch_lanes, rsa_batch_fallbacks; /* crypto threads add */
	_Alignas(CACHELINE) unsigned inflight[KW_OPK_COUNT]; /* owner only, from here on */
	unsigned next_poll;                                  /* first ring poll looks at */
	struct kw_threads_stats stats;
};

static const struct kw_backend_ops threads_ops;

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

/* ---- futex ---- */

static void futex_wait(_Atomic uint32_t *word, uint32_t val)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(_Atomic uint32_t *word)
{
	syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- crypto threads ---- */

static struct kw_op *next_request(struct crypto_thread *t)
{
	struct threads_backend *b = t->b;
	for (;;) {
		struct kw_op *op;
		for (int i = 0; i < IDLE_SPINS; i++) {
			if ((op = kw_ring_pop(&t->req)) != NULL)
				return op;
			if (atomic_load_explicit(&b->stop, memory_order_acquire))
				return NULL;
			cpu_relax();
		}
		atomic_store(&t->sleeping, 1);
		atomic_thread_fence(memory_order_seq_cst);
		if ((op = kw_ring_pop(&t->req)) != NULL) {
			atomic_store(&t->sleeping, 0);
			return op;
		}
		if (!atomic_load(&b->stop))
			futex_wait(&t->sleeping, 1);
		atomic_store(&t->sleeping, 0);
	}
}

static void compute_batch(struct threads_backend *b, struct kw_op *const *ops, size_t n)
{
	struct kw_rsa_batch_counts c = {0};

	kw_op_compute_many(ops, n, &c);
	if (c.batches != 0) {
		atomic_fetch_add_explicit(&b->rsa_batches, c.batches, memory_order_relaxed);
		atomic_fetch_add_explicit(&b->rsa_batch_lanes, c.lanes, memory_order_relaxed);
	}
	if (c.fallbacks != 0)
		atomic_fetch_add_explicit(&b->rsa_batch_fallbacks, c.fallbacks,
		                          memory_order_relaxed);
}

static void *crypto_main(void *arg)
{
	struct crypto_thread *t = arg;
	struct threads_backend *b = t->b;
	struct kw_op *op;

	while ((op = next_request(t)) != NULL) {
		struct kw_op *ops[KW_RSA_BATCH_MAX];
		size_t n = 1;

		ops[0] = op;
		if (op->rsa_batch) {
			/* What is queued now may join it: a batch forms from what waits, never by
			 * waiting. */
			while (n < KW_RSA_BATCH_MAX && (op = kw_ring_pop(&t->req)) != NULL)
				ops[n++] = op;
			compute_batch(b, ops, n);
		} else {
			kw_op_compute(op);
		}
		/* Cannot fail: this thread holds at most ring_size ops of the owner's. */
		for (size_t i = 0; i < n; i++)
			(void)kw_ring_push(&t->done, ops[i]);
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load_explicit(&b->owner_sleeping, memory_order_relaxed) &&
		    atomic_exchange(&b->owner_sleeping, 0)) {
			uint64_t one = 1;
			ssize_t w = write(b->efd, &one, sizeof(one));
			(void)w;
			atomic_fetch_add_explicit(&b->wakeups, 1, memory_order_relaxed);
		}
	}
	kw_op_compute_thread_cleanup();
	return NULL;
}

/* ---- backend operations (owning thread) ---- */

static int threads_submit(struct kw_backend *base, struct kw_op *op)
{
	struct threads_backend *b = (struct threads_backend *)base;
	struct crypto_thread *t = &b->t[0];

	/* The least loaded thread: RSA signs are long, so balance matters. */
	for (unsigned i = 1; i < b->n; i++)
		if (b->t[i].outstanding < t->outstanding)
			t = &b->t[i];
	if (t->outstanding >= b->ring_size) {
		b->stats.eagain++;
		return -EAGAIN;
	}
	kw_op_accept(op);
	(void)kw_ring_push(&t->req, op); /* room: the ring holds at most outstanding ops */
	t->outstanding++;
	b->inflight[op->kind < KW_OPK_COUNT ? op->kind : KW_OPK_OTHER]++;
	b->stats.submitted++;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&t->sleeping, memory_order_relaxed) &&
	    atomic_exchange(&t->sleeping, 0)) {
		futex_wake(&t->sleeping);
		b->stats.thread_kicks++;
	}
	return 0;
}

static void finish(struct threads_backend *b, struct crypto_thread *t, struct kw_op *op, int status)
{
	t->outstanding--;
	b->inflight[op->kind < KW_OPK_COUNT ? op->kind : KW_OPK_OTHER]--;
	b->stats.completed++;
	kw_op_complete(op, status);
	kw_op_unref(op); /* the backend's reference */
}

static int threads_poll(struct kw_backend *base, unsigned max)
{
	struct threads_backend *b = (struct threads_backend *)base;
	unsigned done = 0, idle = 0;

	/* Round robin over the rings, so one busy thread cannot starve the others' answers. */
	for (unsigned i = b->next_poll; done < max && idle < b->n; i = (i + 1) % b->n) {
		struct crypto_thread *t = &b->t[i];
		struct kw_op *op = kw_ring_pop(&t->done);
		if (op == NULL) {
			idle++;
			continue;
		}
		idle = 0;
		finish(b, t, op, op->status);
		done++;
		b->next_poll = (i + 1) % b->n;
	}
	return (int)done;
}

static unsigned threads_inflight(const struct kw_backend *base, enum kw_op_kind kind)
{
	const struct threads_backend *b = (const struct threads_backend *)base;
	return kind < KW_OPK_COUNT ? b->inflight[kind] : 0;
}

static void threads_free(struct kw_backend *base)
{
	struct threads_backend *b = (struct threads_backend *)base;
	struct kw_op *op;

	atomic_store(&b->stop, true);
	for (unsigned i = 0; i < b->n; i++) {
		struct crypto_thread *t = &b->t[i];
		if (!t->started)
			continue;
		atomic_store(&t->sleeping, 0);
		futex_wake(&t->sleeping);
		pthread_join(t->tid, NULL);
	}
	/* Exactly once, even now: computed ops with their result, the rest cancelled. */
	for (unsigned i = 0; i < b->n; i++) {
		struct crypto_thread *t = &b->t[i];
		if (t->req.slot == NULL || t->done.slot == NULL)
			continue;
		while ((op = kw_ring_pop(&t->done)) != NULL)
			finish(b, t, op, op->status);
		while ((op = kw_ring_pop(&t->req)) != NULL)
			finish(b, t, op, -KW_ECANCELED);
	}
	for (unsigned i = 0; i < b->n; i++) {
		kw_ring_fini(&b->t[i].req);
		kw_ring_fini(&b->t[i].done);
	}
	free(b->t);
	if (b->efd >= 0)
		close(b->efd);
	free(b);
}

KW_BACKEND_OPS(threads, "threads");

static void *zalloc_aligned(size_t size)
{
	size = (size + CACHELINE - 1) & ~(size_t)(CACHELINE - 1);
	void *p = aligned_alloc(CACHELINE, size);
	if (p != NULL)
		memset(p, 0, size);
	return p;
}

int kw_backend_threads_new(struct kw_backend **out, unsigned nthreads, unsigned ring_size)
{
	struct threads_backend *b = NULL;
	uint32_t size = 2;
	sigset_t all, old;
	int rc;

	if (nthreads < 1 || nthreads > 64 || ring_size < 2 || ring_size > 65536)
		return -EINVAL;
	while (size < ring_size)
		size <<= 1;
	if ((b = zalloc_aligned(sizeof(*b))) == NULL)
		return -ENOMEM;
	b->base.ops = &threads_ops;
	b->ring_size = size;
	b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (b->efd < 0) {
		rc = -errno;
		goto err;
	}
	if ((b->t = zalloc_aligned(nthreads * sizeof(*b->t))) == NULL) {
		rc = -ENOMEM;
		goto err;
	}
	b->n = nthreads;
	for (unsigned i = 0; i < nthreads; i++) {
		b->t[i].b = b;
		if ((rc = kw_ring_init(&b->t[i].req, size)) < 0 ||
		    (rc = kw_ring_init(&b->t[i].done, size)) < 0)
			goto err;
	}
	/* Crypto threads take no signals: the program's signal handling stays where it was. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = 0;
	for (unsigned i = 0; i < nthreads && rc == 0; i++) {
		rc = -pthread_create(&b->t[i].tid, NULL, crypto_main, &b->t[i]);
		if (rc == 0) {
			b->t[i].started = true;
			pthread_setname_np(b->t[i].tid, "kw-crypto");
		}
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc < 0)
		goto err;
	*out = &b->base;
	return 0;
err:
	threads_free(&b->base);
	return rc;
}

static struct threads_backend *as_threads(const struct kw_backend *b)
{
	return b != NULL && b->ops == &threads_ops ? (struct threads_backend *)b : NULL;
}

int kw_backend_threads_stats(const struct kw_backend *base, struct kw_threads_stats *out)
{
	const struct threads_backend *b = as_threads(base);
	if (b == NULL)
		return -EINVAL;
	*out = b->stats;
	out->wakeups = atomic_load_explicit(&b->wakeups, memory_order_relaxed);
	out->rsa_batches = atomic_load_explicit(&b->rsa_batches, memory_order_relaxed);
	out->rsa_batch_lanes = atomic_load_explicit(&b->rsa_batch_lanes, memory_order_relaxed);
	out->rsa_batch_fallbacks =
	    atomic_load_explicit(&b->rsa_batch_fallbacks, memory_order_relaxed);
	return 0;
}

int kw_backend_wake_fd(const struct kw_backend *base)
{
	const struct threads_backend *b = as_threads(base);
	return b != NULL ? b->efd : -1;
}

bool kw_backend_arm(struct kw_backend *base)
{
	struct threads_backend *b = as_threads(base);
	if (b == NULL)
		return true;
	atomic_store(&b->owner_sleeping, 1);
	atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < b->n; i++) {
		if (!kw_ring_empty(&b->t[i].done)) {
			atomic_store_explicit(&b->owner_sleeping, 0, memory_order_relaxed);
			return false;
		}
	}
	return true;
}

void kw_backend_disarm(struct kw_backend *base)
{
	struct threads_backend *b = as_threads(base);
	if (b != NULL)
		atomic_store_explicit(&b->owner_sleeping, 0, memory_order_relaxed);
}

void kw_backend_drain_wake_fd(struct kw_backend *base)
{
	struct threads_backend *b = as_threads(base);
	uint64_t v;
	if (b != NULL) {
		ssize_t r = read(b->efd, &v, sizeof(v));
		(void)r;
	}
}
