/*
 * fake_backend.h - a scripted offload backend for the poller tests: the
 * test sets how many ops are in flight (all of kind ASYM) and how many the
 * next poll reaps, and reads how often it was polled. It takes no ops.
 */
#ifndef KW_TEST_FAKE_BACKEND_H
#define KW_TEST_FAKE_BACKEND_H

#include <errno.h>

#include "keyway/backend.h"

struct fake_backend {
	struct kw_backend base;
	unsigned inflight;  /* ops in flight (all of kind ASYM) */
	unsigned completes; /* what the next poll reaps */
	int polls;
};

static inline int fake_backend_submit(struct kw_backend *b, struct kw_op *op)
{
	return -EINVAL;
}

static inline int fake_backend_poll(struct kw_backend *b, unsigned max)
{
	struct fake_backend *f = (struct fake_backend *)b;
	unsigned n = f->completes < max ? f->completes : max;
	f->polls++;
	f->completes -= n;
	f->inflight -= n;
	return (int)n;
}

static inline unsigned fake_backend_inflight(const struct kw_backend *b, enum kw_op_kind kind)
{
	const struct fake_backend *f = (const struct fake_backend *)b;
	return kind == KW_OPK_ASYM ? f->inflight : 0;
}

static inline void fake_backend_free(struct kw_backend *b)
{
}

static const struct kw_backend_ops fake_backend_ops = {
    .name = "fake",
    .submit = fake_backend_submit,
    .poll = fake_backend_poll,
    .inflight = fake_backend_inflight,
    .free = fake_backend_free,
};

#endif
