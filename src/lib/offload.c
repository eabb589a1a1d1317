/* offload.c - operation lifetime for the offload core (see keyway/offload.h). */
#include "keyway/offload.h"

#include <string.h>

#include <openssl/crypto.h>

void kw_op_init(struct kw_op *op, enum kw_op_kind kind, uint8_t opcode)
{
	memset(op, 0, sizeof(*op));
	op->kind = kind;
	op->opcode = opcode;
	atomic_init(&op->state, KW_OPSTATE_NEW);
	atomic_init(&op->refs, 1);
	atomic_flag_clear(&op->cb_lock);
	op->server = -1;
}

static void cb_lock(struct kw_op *op)
{
	/* Held only across a done callback, which just queues or writes an eventfd. */
	while (atomic_flag_test_and_set_explicit(&op->cb_lock, memory_order_acquire))
		;
}

static void cb_unlock(struct kw_op *op)
{
	atomic_flag_clear_explicit(&op->cb_lock, memory_order_release);
}

void kw_op_detach(struct kw_op *op)
{
	cb_lock(op);
	op->done = NULL;
	op->done_arg = NULL;
	cb_unlock(op);
}

void kw_op_ref(struct kw_op *op)
{
	atomic_fetch_add_explicit(&op->refs, 1, memory_order_relaxed);
}

void kw_op_unref(struct kw_op *op)
{
	if (op == NULL)
		return;
	if (atomic_fetch_sub_explicit(&op->refs, 1, memory_order_acq_rel) != 1)
		return;
	/* Results may be decrypted premaster blocks. */
	OPENSSL_cleanse(op->out, sizeof(op->out));
	if (op->release != NULL)
		op->release(op);
}

void kw_op_accept(struct kw_op *op)
{
	kw_op_ref(op);
	atomic_store_explicit(&op->state, KW_OPSTATE_INFLIGHT, memory_order_release);
}

void kw_op_complete(struct kw_op *op, int status)
{
	int expected = KW_OPSTATE_INFLIGHT;
	/* Exactly once, whichever path (answer, timeout, teardown) gets here first. */
	if (!atomic_compare_exchange_strong_explicit(&op->state, &expected, KW_OPSTATE_COMPLETING,
	                                             memory_order_acq_rel, memory_order_acquire))
		return;
	op->status = status;
	/* Publishes status and out[] to whoever sees KW_OPSTATE_DONE. */
	atomic_store_explicit(&op->state, KW_OPSTATE_DONE, memory_order_release);
	cb_lock(op);
	if (op->done != NULL)
		op->done(op, op->done_arg);
	cb_unlock(op);
}
