/*
 * test_gen.c - generations and their slot: reference counts through
 * publish and get, the seq readers compare, and a reader that keeps an old
 * generation alive across a publish from another thread.
 */
#include <pthread.h>

#include "check.h"
#include "gen.h"

static unsigned refs(struct kwd_gen *g)
{
	return atomic_load(&g->refs);
}

static struct kwd_gen *make(uint64_t seq)
{
	struct kwd_gen *g = NULL;
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	CHECK(ctx != NULL);
	CHECK_EQ(kwd_gen_new(&g, seq, NULL, ctx), 0);
	CHECK(g != NULL && g->seq == seq && g->ssl_ctx == ctx && g->ks == NULL);
	CHECK_EQ(refs(g), 1);
	return g;
}

static void test_refs(void)
{
	struct kwd_gen *g = make(1);
	CHECK(kwd_gen_ref(g) == g);
	CHECK_EQ(refs(g), 2);
	kwd_gen_unref(g);
	CHECK_EQ(refs(g), 1);
	kwd_gen_unref(g); /* frees it and its context (ASan would tell) */
	CHECK(kwd_gen_ref(NULL) == NULL);
	kwd_gen_unref(NULL);
}

static void test_slot(void)
{
	struct kwd_gen_slot slot;
	kwd_gen_slot_init(&slot);
	CHECK_EQ(kwd_gen_slot_seq(&slot), 0);
	CHECK(kwd_gen_slot_get(&slot) == NULL);

	struct kwd_gen *g1 = make(1);
	kwd_gen_slot_publish(&slot, g1);
	CHECK_EQ(kwd_gen_slot_seq(&slot), 1);
	CHECK_EQ(refs(g1), 1); /* the slot took the caller's reference */

	struct kwd_gen *held = kwd_gen_slot_get(&slot);
	CHECK(held == g1);
	CHECK_EQ(refs(g1), 2);

	/* A reload: the holder keeps g1, the slot now serves g2. */
	struct kwd_gen *g2 = make(2);
	kwd_gen_slot_publish(&slot, g2);
	CHECK_EQ(kwd_gen_slot_seq(&slot), 2);
	CHECK_EQ(refs(g1), 1);
	CHECK(held->seq == 1 && held->ssl_ctx != NULL);
	kwd_gen_unref(held);

	struct kwd_gen *now = kwd_gen_slot_get(&slot);
	CHECK(now == g2);
	CHECK_EQ(refs(g2), 2);
	kwd_gen_unref(now);
	kwd_gen_slot_cleanup(&slot);
}

struct reader {
	struct kwd_gen_slot *slot;
	uint64_t last; /* highest seq seen */
	int went_back; /* a seq lower than one seen before */
};

/* Readers take and drop the current generation the way workers do. */
static void *reader_main(void *arg)
{
	struct reader *r = arg;
	for (int i = 0; i < 20000; i++) {
		if (kwd_gen_slot_seq(r->slot) == r->last)
			continue;
		struct kwd_gen *g = kwd_gen_slot_get(r->slot);
		if (g->seq < r->last)
			r->went_back++;
		r->last = g->seq;
		kwd_gen_unref(g);
	}
	return NULL;
}

static void test_threads(void)
{
	struct kwd_gen_slot slot;
	struct reader r[2];
	pthread_t t[2];

	kwd_gen_slot_init(&slot);
	kwd_gen_slot_publish(&slot, make(1));
	for (int i = 0; i < 2; i++) {
		r[i] = (struct reader){.slot = &slot};
		CHECK_EQ(pthread_create(&t[i], NULL, reader_main, &r[i]), 0);
	}
	for (uint64_t seq = 2; seq <= 200; seq++)
		kwd_gen_slot_publish(&slot, make(seq));
	for (int i = 0; i < 2; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(r[i].went_back, 0);
		CHECK(r[i].last >= 1 && r[i].last <= 200);
	}
	CHECK_EQ(refs(slot.gen), 1); /* every reader let go */
	kwd_gen_slot_cleanup(&slot);
}

int main(void)
{
	test_refs();
	test_slot();
	test_threads();
	CHECK_DONE();
}
