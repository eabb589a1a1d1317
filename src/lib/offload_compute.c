/*
 * offload_compute.c - kw_op_compute: one keyless operation on a local key,
 * synchronously, with the keyserver's semantics (keyway/opcodes.h).
 *
 * OpenSSL 3.0 spends microseconds fetching algorithms and building a context
 * (as much as an ECDSA sign costs itself), so each thread keeps initialised
 * contexts for the few keys it has used lately. An entry holds a reference on
 * its EVP_PKEY, so a pointer in the cache can never be reused by another key
 * while the entry lives; the cache is freed when the thread exits.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/offload.h"
#include "keyway/opcodes.h"

#define CACHE_KEYS 8 /* a proxy serves one or two certificates per thread */

struct cache_entry {
	EVP_PKEY *pkey; /* referenced; NULL: free slot */
	int key_type;
	EVP_PKEY_CTX *pctx[KW_OPCODE_SLOTS];
	struct kw_ed25519_signer ed25519;
	uint64_t used; /* cache tick of the last use, for LRU eviction */
};

struct cache {
	struct cache_entry e[CACHE_KEYS];
	uint64_t tick;
};

static pthread_key_t cache_tls;
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static int cache_tls_ok;

static void entry_clear(struct cache_entry *e)
{
	for (int i = 0; i < KW_OPCODE_SLOTS; i++)
		EVP_PKEY_CTX_free(e->pctx[i]);
	kw_ed25519_signer_cleanup(&e->ed25519);
	EVP_PKEY_free(e->pkey);
	memset(e, 0, sizeof(*e));
}

static void cache_free(void *p)
{
	struct cache *c = p;
	if (c == NULL)
		return;
	for (int i = 0; i < CACHE_KEYS; i++)
		entry_clear(&c->e[i]);
	free(c);
}

static void cache_init_once(void)
{
	cache_tls_ok = pthread_key_create(&cache_tls, cache_free) == 0;
}

void kw_op_compute_thread_cleanup(void)
{
	pthread_once(&cache_once, cache_init_once);
	if (!cache_tls_ok)
		return;
	cache_free(pthread_getspecific(cache_tls));
	pthread_setspecific(cache_tls, NULL);
}

static struct cache *thread_cache(void)
{
	pthread_once(&cache_once, cache_init_once);
	if (!cache_tls_ok)
		return NULL;
	struct cache *c = pthread_getspecific(cache_tls);
	if (c == NULL && (c = calloc(1, sizeof(*c))) != NULL &&
	    pthread_setspecific(cache_tls, c) != 0) {
		free(c);
		c = NULL;
	}
	return c;
}

/* lookup returns the entry of pkey, making one (evicting the least recently used) if needed. */
static struct cache_entry *lookup(struct cache *c, EVP_PKEY *pkey)
{
	struct cache_entry *victim = &c->e[0];
	c->tick++;
	for (int i = 0; i < CACHE_KEYS; i++) {
		struct cache_entry *e = &c->e[i];
		if (e->pkey == pkey) {
			e->used = c->tick;
			return e;
		}
		if (e->pkey == NULL || (victim->pkey != NULL && e->used < victim->used))
			victim = e;
	}
	entry_clear(victim);
	if (EVP_PKEY_up_ref(pkey) != 1)
		return NULL;
	victim->pkey = pkey;
	victim->key_type = kw_key_type_of(pkey);
	victim->used = c->tick;
	return victim;
}

/* run_uncached is the path without a cache (allocation failed): slower, same result. */
static int run_uncached(struct kw_op *op, const struct kw_opcode_desc *d)
{
	int rc = -KW_ECRYPTO;
	if (d->alg == KW_ALG_ED25519) {
		struct kw_ed25519_signer s = {0};
		rc = kw_ed25519_sign(&s, op->pkey, op->out, sizeof(op->out), &op->out_len, op->in,
		                     op->in_len);
		kw_ed25519_signer_cleanup(&s);
		return rc;
	}
	EVP_PKEY_CTX *ctx = kw_opcode_pctx_new(op->pkey, d);
	if (ctx != NULL)
		rc = kw_opcode_pctx_run(ctx, d, op->pkey, op->out, sizeof(op->out), &op->out_len,
		                        op->in, op->in_len);
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

static int run(struct kw_op *op, const struct kw_opcode_desc *d)
{
	struct cache *c = thread_cache();
	struct cache_entry *e = c != NULL ? lookup(c, op->pkey) : NULL;

	if (e == NULL) {
		if (!kw_opcode_check(d, kw_key_type_of(op->pkey), op->in_len))
			return -KW_ECRYPTO;
		return run_uncached(op, d);
	}
	if (!kw_opcode_check(d, e->key_type, op->in_len))
		return -KW_ECRYPTO;
	if (d->alg == KW_ALG_ED25519)
		return kw_ed25519_sign(&e->ed25519, op->pkey, op->out, sizeof(op->out),
		                       &op->out_len, op->in, op->in_len);
	EVP_PKEY_CTX *ctx = e->pctx[d->slot];
	if (ctx == NULL && (ctx = e->pctx[d->slot] = kw_opcode_pctx_new(op->pkey, d)) == NULL)
		return -KW_ECRYPTO;
	return kw_opcode_pctx_run(ctx, d, op->pkey, op->out, sizeof(op->out), &op->out_len, op->in,
	                          op->in_len);
}

int kw_op_compute(struct kw_op *op)
{
	const struct kw_opcode_desc *d = kw_opcode_desc(op->opcode);
	int rc;

	op->out_len = 0;
	if (d == NULL || op->pkey == NULL)
		rc = -EINVAL;
	else
		rc = run(op, d);
	if (rc != 0) {
		/* One bad op's errors must not pile up in this thread's queue. */
		ERR_clear_error();
		OPENSSL_cleanse(op->out, sizeof(op->out));
		op->out_len = 0;
	}
	op->status = rc;
	return rc;
}
