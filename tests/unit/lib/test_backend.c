/*
 * test_backend.c - what every backend shares (backend.c): the per-thread
 * binding and the in-flight sum over op kinds, on a stub backend whose
 * counts the test sets.
 */
#include <pthread.h>
#include <stddef.h>

#include "check.h"
#include "keyway/backend.h"
#include "keyway/offload.h"

struct stub_backend {
	struct kw_backend base; /* first: the ops pointer */
	unsigned counts[KW_OPK_COUNT];
};

static int stub_submit(struct kw_backend *b, struct kw_op *op)
{
	return -1;
}

static int stub_poll(struct kw_backend *b, unsigned max)
{
	return 0;
}

static unsigned stub_inflight(const struct kw_backend *b, enum kw_op_kind kind)
{
	return ((const struct stub_backend *)b)->counts[kind];
}

static void stub_free(struct kw_backend *b)
{
}

KW_BACKEND_OPS(stub, "stub");

static void test_inflight_all(void)
{
	struct stub_backend s = {.base.ops = &stub_ops};
	CHECK_EQ(kw_backend_inflight_all(&s.base), 0);
	s.counts[KW_OPK_ASYM] = 5;
	CHECK_EQ(kw_backend_inflight_all(&s.base), 5);
	s.counts[KW_OPK_OTHER] = 7;
	CHECK_EQ(kw_backend_inflight_all(&s.base), 12);
	s.counts[KW_OPK_ASYM] = 0;
	CHECK_EQ(kw_backend_inflight_all(&s.base), 7);
}

static void *bound_elsewhere(void *arg)
{
	/* Another thread starts unbound and its binding stays its own. */
	struct kw_backend *seen = kw_backend_thread();
	kw_backend_bind_thread(arg);
	return seen == NULL && kw_backend_thread() == arg ? arg : NULL;
}

static void test_binding(void)
{
	struct stub_backend a = {.base.ops = &stub_ops}, b = {.base.ops = &stub_ops};
	pthread_t th;
	void *ok = NULL;

	CHECK(kw_backend_thread() == NULL);
	kw_backend_bind_thread(&a.base);
	CHECK(kw_backend_thread() == &a.base);
	CHECK_EQ(pthread_create(&th, NULL, bound_elsewhere, &b.base), 0);
	CHECK_EQ(pthread_join(th, &ok), 0);
	CHECK(ok == &b.base);
	CHECK(kw_backend_thread() == &a.base);
	kw_backend_bind_thread(NULL);
	CHECK(kw_backend_thread() == NULL);
}

int main(void)
{
	test_inflight_all();
	test_binding();
	CHECK_DONE();
}
