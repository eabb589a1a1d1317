/*
 * backend_inline.c - the inline backend: the op is computed on the calling
 * thread inside submit (QTLS's software baseline: no offload, the sign runs
 * on the loop thread). Completing before submit returns lets an
 * asynchronous caller see kw_op_is_done and skip the pause altogether, so
 * "inline" costs no fibre switch and no notification.
 */
#include <errno.h>
#include <stdlib.h>

#include "keyway/backend.h"

struct inline_backend {
	struct kw_backend base; /* first: the ops pointer */
};

static int inline_submit(struct kw_backend *b, struct kw_op *op)
{
	kw_op_accept(op);
	int status = kw_op_compute(op);
	kw_op_complete(op, status);
	kw_op_unref(op); /* the backend's reference */
	return 0;
}

static int inline_poll(struct kw_backend *b, unsigned max)
{
	return 0;
}

static unsigned inline_inflight(const struct kw_backend *b, enum kw_op_kind kind)
{
	return 0;
}

static void inline_free(struct kw_backend *b)
{
	free(b);
}

KW_BACKEND_OPS(inline, "inline");

int kw_backend_inline_new(struct kw_backend **out)
{
	struct inline_backend *ib = calloc(1, sizeof(*ib));
	if (ib == NULL)
		return -ENOMEM;
	ib->base.ops = &inline_ops;
	*out = &ib->base;
	return 0;
}
