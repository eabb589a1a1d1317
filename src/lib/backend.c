/* backend.c - what every backend shares: the per-thread binding and in-flight sums. */
#include "keyway/backend.h"

static _Thread_local struct kw_backend *bound;

void kw_backend_bind_thread(struct kw_backend *b)
{
	bound = b;
}

struct kw_backend *kw_backend_thread(void)
{
	return bound;
}

unsigned kw_backend_inflight_all(const struct kw_backend *b)
{
	unsigned n = 0;
	for (int k = 0; k < KW_OPK_COUNT; k++)
		n += kw_backend_inflight(b, (enum kw_op_kind)k);
	return n;
}
