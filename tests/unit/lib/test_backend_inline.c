/*
 * test_backend_inline.c - the inline backend with real keys: the op is
 * computed and completed inside submit, exactly once, errors included;
 * nothing is ever in flight and there is no wake-up fd.
 */
#include "backend_fixture.h"

static void test_inline(void)
{
	struct kw_backend *b = NULL;
	CHECK_EQ(kw_backend_inline_new(&b), 0);
	CHECK(strcmp(b->ops->name, "inline") == 0);
	CHECK_EQ(kw_backend_wake_fd(b), -1);
	CHECK(kw_backend_arm(b));
	struct top *t = new_op(rsa);
	CHECK_EQ(kw_backend_submit(b, &t->op), 0);
	/* Done inside submit: the caller need not wait. */
	CHECK(kw_op_is_done(&t->op));
	CHECK_EQ(t->done_calls, 1);
	CHECK_EQ(t->status_seen, 0);
	CHECK(verifies(t));
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_ASYM), 0);
	CHECK_EQ(kw_backend_poll(b, 10), 0);
	CHECK_EQ(t->done_calls, 1);
	int before = released;
	kw_op_unref(&t->op);
	CHECK_EQ(released, before + 1);

	/* A bad op completes with its error, still exactly once. */
	t = new_op(p256);
	t->op.in_len = 31;
	CHECK_EQ(kw_backend_submit(b, &t->op), 0);
	CHECK_EQ(t->done_calls, 1);
	CHECK_EQ(t->status_seen, -KW_ECRYPTO);
	kw_op_unref(&t->op);
	kw_backend_free(b);
}

int main(void)
{
	backend_fixture_keys();
	test_inline();
	backend_fixture_free();
	CHECK_DONE();
}
