/* batch.c - multi-buffer RSA batches of keywayd's requests (see batch.h). */
#include "batch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "keyway/loop.h"
#include "keyway/rsa_batch.h"
#include "keyway/rsa_batch_plan.h"

struct kwd_rsa_batcher {
	struct kwd_batcher base; /* first: the executor's view */
	struct kwd_exec *exec;   /* OpenSSL contexts for what is not worth a batch */
	struct kwd_wmetrics *m;
};

bool kwd_rsa_batch_takes(const struct kwd_exec_op *op)
{
	const struct kw_opcode_desc *d = op->desc;
	if (op->key->bk == NULL || op->key->device != NULL || d == NULL)
		return false;
	/* A size no batch pays for (no IFMA, or a kernel slower than OpenSSL, as in an
	 * unoptimised sanitizer build) stays inline, under the connection's time slice,
	 * rather than being set aside only to be signed by OpenSSL a batch at a time. */
	if (kw_rsa_batch_min_lanes(op->key->bk, op->key->pkey) > KW_RSA_BATCH_MAX)
		return false;
	if (d->alg == KW_ALG_RSA_DECRYPT)
		return op->in.len <= kw_rsa_batch_key_bytes(op->key->bk);
	return d->alg == KW_ALG_RSA_PKCS1 || d->alg == KW_ALG_RSA_PSS;
}

static bool takes(struct kwd_batcher *base, const struct kwd_exec_op *op)
{
	(void)base;
	return kwd_rsa_batch_takes(op);
}

/* openssl computes one job the way an inline request is computed. */
static void by_openssl(struct kwd_rsa_batcher *b, struct kwd_job *job)
{
	uint64_t t0 = kw_now_ns();
	kwd_exec_key(b->exec, job->gen->ks, &job->op, &job->res);
	job->exec_ns = kw_now_ns() - t0;
}

/* block_of writes the block job's key exponentiates; false: not one the batch builds. */
static bool block_of(const struct kwd_job *job, uint8_t *block)
{
	const struct kw_rsa_batch_key *bk = job->op.key->bk;
	size_t len = kw_rsa_batch_key_bytes(bk), in = job->op.in.len;

	if (job->op.desc->alg == KW_ALG_RSA_DECRYPT) {
		/* Raw decryption: the ciphertext as it is, left-padded to the modulus size. */
		memset(block, 0, len - in);
		if (in > 0)
			memcpy(block + (len - in), job->op.in.data, in);
		return true;
	}
	if (kw_rsa_batch_pad(bk, job->op.opcode, job->op.in.data, in, block) == 0)
		return true;
	ERR_clear_error();
	return false;
}

/* run_one_batch computes n jobs of one modulus size with the kernel. */
static void run_one_batch(struct kwd_rsa_batcher *b, struct kwd_job **jobs, size_t n)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	struct kwd_job *lane[KW_RSA_BATCH_MAX];
	uint8_t block[KW_RSA_BATCH_MAX][KW_RESULT_MAX];
	size_t m = 0;

	for (size_t i = 0; i < n; i++) {
		if (!block_of(jobs[i], block[m])) {
			by_openssl(b, jobs[i]);
			continue;
		}
		items[m] = (struct kw_rsa_batch_item){
		    .key = jobs[i]->op.key->bk, .in = block[m], .out = jobs[i]->res.buf, .rc = 0};
		lane[m++] = jobs[i];
	}
	if (m == 0)
		return;
	uint64_t t0 = kw_now_ns();
	kw_rsa_batch_run(items, m);
	/* The batch's time, shared by its lanes. */
	uint64_t each = (kw_now_ns() - t0) / m;
	for (size_t i = 0; i < m; i++) {
		lane[i]->exec_ns = each;
		if (items[i].rc == 0) {
			kwd_exec_result_output(&lane[i]->res, kw_rsa_batch_key_bytes(items[i].key));
		} else {
			ERR_clear_error();
			OPENSSL_cleanse(lane[i]->res.buf, sizeof(lane[i]->res.buf));
			kwd_exec_result_error(&lane[i]->res, KW_ERR_CRYPTO);
		}
	}
	OPENSSL_cleanse(block, sizeof(block));
	kwd_counter_add(&b->m->rsa_batches, 1);
	kwd_counter_add(&b->m->rsa_batch_lanes, m);
}

/*
 * run_size computes the n jobs of one modulus size: in as few batches as
 * hold them, of even sizes (9 jobs are 5 + 4, not 8 + 1), each run by the
 * kernel if it has enough lanes to pay, else by OpenSSL job by job.
 */
static void run_size(struct kwd_rsa_batcher *b, struct kwd_job **jobs, size_t n)
{
	unsigned min = kw_rsa_batch_min_lanes(jobs[0]->op.key->bk, jobs[0]->op.key->pkey);
	size_t nbatches = (n + KW_RSA_BATCH_MAX - 1) / KW_RSA_BATCH_MAX;

	for (size_t k = 0; k < nbatches; k++) {
		size_t size = n / (nbatches - k) + (n % (nbatches - k) != 0);
		if (size >= min) {
			run_one_batch(b, jobs, size);
		} else {
			for (size_t i = 0; i < size; i++)
				by_openssl(b, jobs[i]);
			kwd_counter_add(&b->m->rsa_batch_fallbacks, size);
		}
		jobs += size;
		n -= size;
	}
}

/* run groups the turn's jobs by modulus size (jobs is reordered; answers carry their IDs). */
static void run(struct kwd_batcher *base, struct kwd_job **jobs, size_t n)
{
	struct kwd_rsa_batcher *b = (struct kwd_rsa_batcher *)base;
	size_t done = 0;

	while (done < n) {
		size_t len = kw_rsa_batch_key_bytes(jobs[done]->op.key->bk), end = done + 1;
		for (size_t i = done + 1; i < n; i++) {
			if (kw_rsa_batch_key_bytes(jobs[i]->op.key->bk) == len) {
				struct kwd_job *t = jobs[end];
				jobs[end++] = jobs[i];
				jobs[i] = t;
			}
		}
		run_size(b, jobs + done, end - done);
		done = end;
	}
}

int kwd_rsa_batcher_new(struct kwd_rsa_batcher **out, struct kwd_wmetrics *m)
{
	struct kwd_rsa_batcher *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return -ENOMEM;
	int rc = kwd_exec_new(&b->exec);
	if (rc < 0) {
		free(b);
		return rc;
	}
	b->base.takes = takes;
	b->base.run = run;
	b->m = m;
	*out = b;
	return 0;
}

void kwd_rsa_batcher_free(struct kwd_rsa_batcher *b)
{
	if (b == NULL)
		return;
	kwd_exec_free(b->exec);
	free(b);
}

struct kwd_batcher *kwd_rsa_batcher_base(struct kwd_rsa_batcher *b)
{
	return &b->base;
}
