/*
 * offload_compute.c - kw_op_compute: one keyless operation on a local key,
 * synchronously, with the keyserver's semantics (keyway/opcodes.h).
 *
 * OpenSSL 3.0 spends microseconds fetching algorithms and building a context
 * (as much as an ECDSA sign costs itself), so each thread keeps initialised
 * contexts for the few keys it has used lately. An entry holds a reference on
 * its EVP_PKEY, so a pointer in the cache can never be reused by another key
 * while the entry lives; the cache is freed when the thread exits. An RSA
 * entry also keeps the key in the multi-buffer kernel's form, made on the
 * first batchable op of that key.
 */
#include <errno.h>
#include <stdatomic.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/offload.h"
#include "keyway/opcodes.h"
#include "keyway/rsa_batch.h"
#include "keyway/rsa_batch_plan.h"

#define CACHE_KEYS 8 /* a proxy serves one or two certificates per thread */
/* A batch looks up at most this many keys before it runs: none of them can be evicted. */
_Static_assert(KW_RSA_BATCH_MAX <= CACHE_KEYS, "a batch's keys must fit the cache");

struct cache_entry {
	EVP_PKEY *pkey; /* referenced; NULL: free slot */
	int key_type;
	EVP_PKEY_CTX *pctx[KW_OPCODE_SLOTS];
	struct kw_ed25519_signer ed25519;
	struct kw_rsa_batch_key *bk; /* the kernel's form of an RSA key, or NULL */
	bool bk_tried;               /* bk was asked for (NULL then: the kernel refused it) */
	uint64_t used;               /* cache tick of the last use, for LRU eviction */
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
	kw_rsa_batch_key_free(e->bk);
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

/* ---- multi-buffer RSA batches ---- */

/* A batchable op with its key in the kernel's form (owned by the thread's cache). */
struct lane {
	struct kw_op *op;
	const struct kw_opcode_desc *d;
	const struct kw_rsa_batch_key *bk;
};

static const struct kw_rsa_batch_key *batch_key(struct cache_entry *e)
{
	if (!e->bk_tried) {
		e->bk_tried = true;
		if (kw_rsa_batch_key_new(&e->bk, e->pkey) != 0)
			e->bk = NULL;
		ERR_clear_error();
	}
	return e->bk;
}

/* batchable tells whether op can be a lane, filling *l. */
static bool batchable(struct cache *c, struct kw_op *op, struct lane *l)
{
	const struct kw_opcode_desc *d = kw_opcode_desc(op->opcode);
	struct cache_entry *e;
	const struct kw_rsa_batch_key *bk;

	if (!op->rsa_batch || d == NULL || op->pkey == NULL ||
	    (d->alg != KW_ALG_RSA_PKCS1 && d->alg != KW_ALG_RSA_PSS &&
	     d->alg != KW_ALG_RSA_DECRYPT))
		return false;
	if ((e = lookup(c, op->pkey)) == NULL || !kw_opcode_check(d, e->key_type, op->in_len) ||
	    (bk = batch_key(e)) == NULL)
		return false;
	size_t len = kw_rsa_batch_key_bytes(bk);
	/* A ciphertext longer than the modulus is OpenSSL's error to give. */
	if (len > sizeof(op->out) || (d->alg == KW_ALG_RSA_DECRYPT && op->in_len > len))
		return false;
	*l = (struct lane){.op = op, .d = d, .bk = bk};
	return true;
}

/* run_batch computes n lanes of one modulus size with the kernel. */
static void run_batch(struct lane *const *g, size_t n, struct kw_rsa_batch_counts *counts)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	struct kw_op *ops[KW_RSA_BATCH_MAX];
	uint8_t block[KW_RSA_BATCH_MAX][KW_RESULT_MAX];
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		struct kw_op *op = g[i]->op;
		size_t len = kw_rsa_batch_key_bytes(g[i]->bk);
		op->out_len = 0;
		if (g[i]->d->alg == KW_ALG_RSA_DECRYPT) {
			/* Raw decryption exponentiates the ciphertext as it is, left-padded. */
			memset(block[m], 0, len - op->in_len);
			if (op->in_len > 0)
				memcpy(block[m] + (len - op->in_len), op->in, op->in_len);
		} else if (kw_rsa_batch_pad(g[i]->bk, op->opcode, op->in, op->in_len, block[m]) !=
		           0) {
			/* A padding the batch code does not build: OpenSSL's answer stands. */
			ERR_clear_error();
			kw_op_compute(op);
			continue;
		}
		items[m] = (struct kw_rsa_batch_item){
		    .key = g[i]->bk, .in = block[m], .out = op->out, .rc = 0};
		ops[m++] = op;
	}
	if (m > 0)
		kw_rsa_batch_run(items, m);
	for (size_t i = 0; i < m; i++) {
		ops[i]->status = items[i].rc;
		if (items[i].rc == 0) {
			ops[i]->out_len = kw_rsa_batch_key_bytes(items[i].key);
		} else {
			ERR_clear_error();
			OPENSSL_cleanse(ops[i]->out, sizeof(ops[i]->out));
		}
	}
	OPENSSL_cleanse(block, sizeof(block));
	if (counts != NULL && m > 0) {
		counts->batches++;
		counts->lanes += m;
	}
}

/* run_lanes batches the lanes of each modulus size, or sends them to OpenSSL when too few. */
static void run_lanes(struct lane *lanes, size_t n, struct kw_rsa_batch_counts *counts)
{
	bool taken[KW_RSA_BATCH_MAX] = {false};

	for (size_t i = 0; i < n; i++) {
		struct lane *g[KW_RSA_BATCH_MAX];
		size_t len = kw_rsa_batch_key_bytes(lanes[i].bk), m = 0;
		if (taken[i])
			continue;
		for (size_t j = i; j < n; j++) {
			if (!taken[j] && kw_rsa_batch_key_bytes(lanes[j].bk) == len) {
				taken[j] = true;
				g[m++] = &lanes[j];
			}
		}
		if (m >= kw_rsa_batch_min_lanes(lanes[i].bk, lanes[i].op->pkey)) {
			run_batch(g, m, counts);
			continue;
		}
		for (size_t j = 0; j < m; j++)
			kw_op_compute(g[j]->op);
		if (counts != NULL)
			counts->fallbacks += m;
	}
}

/* Process-wide totals (relaxed atomics), for metrics read from another thread. */
static _Atomic uint64_t total_batches, total_lanes, total_fallbacks;

void kw_op_batch_totals(struct kw_rsa_batch_counts *out)
{
	out->batches = atomic_load_explicit(&total_batches, memory_order_relaxed);
	out->lanes = atomic_load_explicit(&total_lanes, memory_order_relaxed);
	out->fallbacks = atomic_load_explicit(&total_fallbacks, memory_order_relaxed);
}

static void add_totals(const struct kw_rsa_batch_counts *c)
{
	if (c->batches != 0) {
		atomic_fetch_add_explicit(&total_batches, c->batches, memory_order_relaxed);
		atomic_fetch_add_explicit(&total_lanes, c->lanes, memory_order_relaxed);
	}
	if (c->fallbacks != 0)
		atomic_fetch_add_explicit(&total_fallbacks, c->fallbacks, memory_order_relaxed);
}

void kw_op_compute_many(struct kw_op *const *ops, size_t n, struct kw_rsa_batch_counts *counts)
{
	struct kw_rsa_batch_counts mine = {0};
	struct cache *c = thread_cache();

	while (n > 0) {
		size_t chunk = n < KW_RSA_BATCH_MAX ? n : KW_RSA_BATCH_MAX, nl = 0, nr = 0;
		struct lane lanes[KW_RSA_BATCH_MAX];
		struct kw_op *rest[KW_RSA_BATCH_MAX];

		for (size_t i = 0; i < chunk; i++)
			if (c == NULL || !batchable(c, ops[i], &lanes[nl]))
				rest[nr++] = ops[i];
			else
				nl++;
		/* The batch first: the others' cache lookups may evict its keys. */
		run_lanes(lanes, nl, &mine);
		for (size_t i = 0; i < nr; i++)
			kw_op_compute(rest[i]);
		ops += chunk;
		n -= chunk;
	}
	add_totals(&mine);
	if (counts != NULL) {
		counts->batches += mine.batches;
		counts->lanes += mine.lanes;
		counts->fallbacks += mine.fallbacks;
	}
}
