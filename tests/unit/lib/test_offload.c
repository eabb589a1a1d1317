/* test_offload.c - op lifetime: exactly-once completion, detach, last reference frees. */
#include <pthread.h>
#include <stdlib.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/offload.h"

static int done_calls, released;

static void on_done(struct kw_op *op, void *arg)
{
	done_calls++;
	*(int *)arg = op->status;
}

static void on_release(struct kw_op *op)
{
	released++;
	free(op);
}

static void *complete_later(void *p)
{
	struct kw_op *op = p;
	kw_op_complete(op, 0);
	kw_op_unref(op); /* the backend's reference */
	return NULL;
}

int main(void)
{
	int seen = 1;
	struct kw_op *op = malloc(sizeof(*op));
	kw_op_init(op, KW_OPK_ASYM, KW_OP_RSA_SIGN_SHA256);
	op->done = on_done;
	op->done_arg = &seen;
	op->release = on_release;
	CHECK(!kw_op_is_done(op));
	kw_op_accept(op);
	kw_op_complete(op, -KW_ETIMEOUT);
	kw_op_complete(op, 0); /* a late answer after the deadline: ignored */
	CHECK_EQ(done_calls, 1);
	CHECK_EQ(seen, -KW_ETIMEOUT);
	CHECK_EQ(op->status, -KW_ETIMEOUT);
	CHECK(kw_op_is_done(op));
	kw_op_unref(op); /* backend */
	CHECK_EQ(released, 0);
	kw_op_unref(op); /* submitter */
	CHECK_EQ(released, 1);

	/* Detached before completion: the callback never runs, the op is freed by the backend. */
	for (int i = 0; i < 200; i++) {
		done_calls = 0;
		op = malloc(sizeof(*op));
		kw_op_init(op, KW_OPK_ASYM, KW_OP_ECDSA_SIGN_SHA256);
		op->done = on_done;
		op->done_arg = &seen;
		op->release = on_release;
		kw_op_accept(op);
		pthread_t th;
		pthread_create(&th, NULL, complete_later, op);
		kw_op_detach(op); /* races with the completion on purpose */
		int calls_after_detach = done_calls;
		kw_op_unref(op);
		pthread_join(th, NULL);
		CHECK_EQ(done_calls, calls_after_detach);
		CHECK(done_calls <= 1);
	}
	CHECK_EQ(released, 201);
	CHECK_DONE();
}
