/*
 * gen.h - a keywayd generation: the keystore, the TLS context (with the
 * client CAs and CRLs) and the --acl rules served together, and the slot
 * through which the main thread publishes a new one.
 *
 * A generation is immutable and reference-counted. SIGHUP builds a complete
 * new one in the main thread and publishes it in the slot, bumping the slot's
 * seq; each worker compares seq with the one it holds before serving a batch
 * of requests and swaps its reference when they differ. Connections opened
 * earlier keep their SSL objects, which hold their own reference to the old
 * SSL_CTX, so nothing is dropped.
 */
#ifndef KEYWAYD_GEN_H
#define KEYWAYD_GEN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "acl.h"
#include "keystore.h"
#include "trust.h"

struct kwd_gen {
	atomic_uint refs;
	uint64_t seq; /* 1 for the start-up set, +1 per successful reload */
	struct kwd_keystore *ks;
	SSL_CTX *ssl_ctx;    /* NULL without a TCP listener */
	struct kwd_acl *acl; /* --acl rules, NULL without (everything allowed); owned */
	/* SHA-256 over --client-ca and --client-crl as loaded: a change makes the
	 * workers verify their clients' certificates again */
	uint8_t trust[KWD_TRUST_DIGEST_LEN];
};

/*
 * kwd_gen_new makes a generation with one reference in *out, taking ownership
 * of ks and ssl_ctx (may be NULL). Returns 0, or -ENOMEM and then the caller
 * still owns both.
 */
int kwd_gen_new(struct kwd_gen **out, uint64_t seq, struct kwd_keystore *ks, SSL_CTX *ssl_ctx);
/* kwd_gen_ref takes a reference (any thread) and returns g. NULL ok. */
struct kwd_gen *kwd_gen_ref(struct kwd_gen *g);
/* kwd_gen_unref drops a reference; the last one frees g, its keystore and context. NULL ok. */
void kwd_gen_unref(struct kwd_gen *g);

/* The current generation, published by one thread and read by the workers. */
struct kwd_gen_slot {
	pthread_mutex_t lock;
	struct kwd_gen *gen;  /* current, under lock; only the publishing thread writes it */
	_Atomic uint64_t seq; /* gen->seq, readable without the lock */
};

/* kwd_gen_slot_init makes an empty slot; kwd_gen_slot_cleanup drops its generation. */
void kwd_gen_slot_init(struct kwd_gen_slot *s);
void kwd_gen_slot_cleanup(struct kwd_gen_slot *s);

/*
 * kwd_gen_slot_publish makes g (whose reference the slot takes over) the
 * current generation and drops the slot's reference to the previous one.
 * Only one thread publishes.
 */
void kwd_gen_slot_publish(struct kwd_gen_slot *s, struct kwd_gen *g);

/* kwd_gen_slot_get returns the current generation with a reference taken (any thread). */
struct kwd_gen *kwd_gen_slot_get(struct kwd_gen_slot *s);

/* kwd_gen_slot_seq is the seq of the current generation: one atomic load (any thread). */
static inline uint64_t kwd_gen_slot_seq(struct kwd_gen_slot *s)
{
	return atomic_load_explicit(&s->seq, memory_order_acquire);
}

#endif
