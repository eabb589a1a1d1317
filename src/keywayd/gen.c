/* gen.c - generations and the slot that publishes them (see gen.h). */
#include "gen.h"

#include <errno.h>
#include <stdlib.h>

int kwd_gen_new(struct kwd_gen **out, uint64_t seq, struct kwd_keystore *ks, SSL_CTX *ssl_ctx)
{
	struct kwd_gen *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return -ENOMEM;
	atomic_init(&g->refs, 1);
	g->seq = seq;
	g->ks = ks;
	g->ssl_ctx = ssl_ctx;
	*out = g;
	return 0;
}

struct kwd_gen *kwd_gen_ref(struct kwd_gen *g)
{
	if (g != NULL)
		atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
	return g;
}

void kwd_gen_unref(struct kwd_gen *g)
{
	if (g == NULL || atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) != 1)
		return;
	kwd_keystore_free(g->ks);
	kwd_acl_free(g->acl);
	SSL_CTX_free(g->ssl_ctx);
	free(g);
}

void kwd_gen_slot_init(struct kwd_gen_slot *s)
{
	pthread_mutex_init(&s->lock, NULL);
	s->gen = NULL;
	atomic_init(&s->seq, 0);
}

void kwd_gen_slot_cleanup(struct kwd_gen_slot *s)
{
	kwd_gen_unref(s->gen);
	s->gen = NULL;
	pthread_mutex_destroy(&s->lock);
}

void kwd_gen_slot_publish(struct kwd_gen_slot *s, struct kwd_gen *g)
{
	pthread_mutex_lock(&s->lock);
	struct kwd_gen *old = s->gen;
	s->gen = g;
	atomic_store_explicit(&s->seq, g->seq, memory_order_release);
	pthread_mutex_unlock(&s->lock);
	kwd_gen_unref(old);
}

struct kwd_gen *kwd_gen_slot_get(struct kwd_gen_slot *s)
{
	pthread_mutex_lock(&s->lock);
	struct kwd_gen *g = kwd_gen_ref(s->gen);
	pthread_mutex_unlock(&s->lock);
	return g;
}
