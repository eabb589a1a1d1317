/*
 * keyway/ring.h - a bounded single-producer single-consumer ring of pointers
 * (Lamport's queue with each side caching the other's index, so that a
 * push or pop touches the shared cache line only when its cache runs out).
 * The threads backend's crypto threads and the QUIC engine's crypto cores
 * both hand work over through it. Capacity must be a power of two.
 */
#ifndef KEYWAY_RING_H
#define KEYWAY_RING_H

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>

struct kw_ring {
	_Alignas(64) _Atomic size_t head; /* next to pop: written by the consumer */
	size_t tail_cache;                /* the consumer's copy of tail */
	_Alignas(64) _Atomic size_t tail; /* next to push: written by the producer */
	size_t head_cache;                /* the producer's copy of head */
	_Alignas(64) size_t mask;         /* capacity - 1 */
	void **slot;
};

/* kw_ring_init allocates room for capacity pointers: 0 or -ENOMEM. */
static inline int kw_ring_init(struct kw_ring *r, size_t capacity)
{
	atomic_init(&r->head, 0);
	atomic_init(&r->tail, 0);
	r->tail_cache = r->head_cache = 0;
	r->mask = capacity - 1;
	r->slot = calloc(capacity, sizeof(*r->slot));
	return r->slot != NULL ? 0 : -ENOMEM;
}

/* kw_ring_fini frees the slots (the ring must be idle); safe on a ring whose init failed. */
static inline void kw_ring_fini(struct kw_ring *r)
{
	free(r->slot);
	r->slot = NULL;
}

/* kw_ring_push (producer) returns false when the ring is full. */
static inline bool kw_ring_push(struct kw_ring *r, void *p)
{
	size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
	if (t - r->head_cache > r->mask) {
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
		if (t - r->head_cache > r->mask)
			return false;
	}
	r->slot[t & r->mask] = p;
	atomic_store_explicit(&r->tail, t + 1, memory_order_release);
	return true;
}

/* kw_ring_pop (consumer) returns NULL when the ring is empty. */
static inline void *kw_ring_pop(struct kw_ring *r)
{
	size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
	if (h == r->tail_cache) {
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		if (h == r->tail_cache)
			return NULL;
	}
	void *p = r->slot[h & r->mask];
	atomic_store_explicit(&r->head, h + 1, memory_order_release);
	return p;
}

/* kw_ring_empty (consumer) reads the producer's index afresh (sequentially consistent). */
static inline bool kw_ring_empty(struct kw_ring *r)
{
	return atomic_load(&r->head) == atomic_load(&r->tail);
}

#endif
