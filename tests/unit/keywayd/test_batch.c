/*
 * test_batch.c - keywayd's batch kind for RSA (batch.c): the keystore makes
 * the kernel's form of RSA keys only with rsa_batch; the batcher takes RSA
 * signatures and raw decryptions of those keys and nothing else; a turn's
 * jobs are split into even batches (9 jobs: 5 + 4, so with batches paying
 * from 5 lanes one batch runs and four go to OpenSSL, where 8 + 1 would
 * batch eight); every answer equals OpenSSL's or verifies, and the counters
 * say what ran where. KEYWAY_RSA_BATCH_MIN_LANES fixes the threshold, so this
 * holds on any CPU.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "batch.h"
#include "check.h"
#include "executor.h"
#include "gen.h"
#include "keygen.h"
#include "keystore.h"
#include "keyway/keyid.h"
#include "keyway/rsa_batch.h"

static EVP_PKEY *rsa_a, *rsa_b, *p256;
static struct kwd_keystore *ks;
static struct kwd_gen *gen;

static const struct kwd_key *key_of(EVP_PKEY *pk)
{
	uint8_t ski[KW_SKI_LEN];
	CHECK_EQ(kw_key_ski(pk, ski), 0);
	return kwd_keystore_find_ski(ks, ski);
}

/* job_for makes a job as the executor would (its input copied, the generation held). */
static struct kwd_job *job_for(EVP_PKEY *pk, uint8_t opcode, const uint8_t *in, size_t len)
{
	struct kwd_job *job = calloc(1, sizeof(*job) + len);
	uint8_t *copy = (uint8_t *)(job + 1);
	memcpy(copy, in, len);
	job->op = (struct kwd_exec_op){
	    .key = key_of(pk), .desc = kw_opcode_desc(opcode), .opcode = opcode, .in = {copy, len}};
	job->gen = kwd_gen_ref(gen);
	return job;
}

static void job_free(struct kwd_job *job)
{
	kwd_exec_result_cleanse(&job->res);
	kwd_gen_unref(job->gen);
	free(job);
}

/* same_as_inline: job's answer equals what the inline path computes for it. */
static int same_as_inline(struct kwd_exec *e, const struct kwd_job *job)
{
	struct kwd_exec_result r;
	kwd_exec_key(e, ks, &job->op, &r);
	int ok = r.opcode == KW_OP_RESPONSE && job->res.opcode == KW_OP_RESPONSE &&
	         r.len == job->res.len && memcmp(r.payload, job->res.payload, r.len) == 0;
	kwd_exec_result_cleanse(&r);
	return ok;
}

static void test_keystore_and_takes(void)
{
	const struct kwd_key *a = key_of(rsa_a), *p = key_of(p256);
	uint8_t d[32] = {0};
	CHECK(a != NULL && p != NULL);
	CHECK(a->bk != NULL && kw_rsa_batch_key_bytes(a->bk) == 256);
	CHECK(p->bk == NULL);

	struct kwd_exec_op op = {.key = a,
	                         .desc = kw_opcode_desc(KW_OP_RSA_PSS_SIGN_SHA256),
	                         .opcode = KW_OP_RSA_PSS_SIGN_SHA256,
	                         .in = {d, 32}};
	/* Where a batch pays (forced here: whether it does is this CPU's and build's). */
	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "2", 1);
	CHECK(kwd_rsa_batch_takes(&op));
	op.desc = kw_opcode_desc(op.opcode = KW_OP_RSA_DECRYPT);
	CHECK(kwd_rsa_batch_takes(&op));
	/* Where none does, the request stays inline. */
	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "9", 1);
	CHECK(!kwd_rsa_batch_takes(&op));
	unsetenv("KEYWAY_RSA_BATCH_MIN_LANES");
	op.key = p;
	op.desc = kw_opcode_desc(op.opcode = KW_OP_ECDSA_SIGN_SHA256);
	CHECK(!kwd_rsa_batch_takes(&op));

	/* Without rsa_batch no key gets the kernel's form. */
	char *dir = make_tmpdir();
	struct kwd_keystore *plain = NULL;
	char err[256];
	CHECK_EQ(write_key(join(dir, "a.key"), rsa_a, FMT_PKCS8_PEM, 0600), 0);
	CHECK_EQ(kwd_keystore_load(dir, NULL, &plain, err, sizeof(err)), 0);
	CHECK(plain != NULL && kwd_keystore_at(plain, 0)->bk == NULL);
	kwd_keystore_free(plain);
	rm_tree(dir);
}

static void test_even_batches(void)
{
	struct kwd_wmetrics m;
	struct kwd_rsa_batcher *b = NULL;
	struct kwd_exec *e = NULL;
	struct kwd_job *jobs[9];
	uint8_t digest[9][32];

	memset(&m, 0, sizeof(m));
	CHECK_EQ(kwd_rsa_batcher_new(&b, &m), 0);
	CHECK_EQ(kwd_exec_new(&e), 0);
	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "5", 1);
	for (int i = 0; i < 9; i++) {
		RAND_bytes(digest[i], 32);
		/* Two keys, PKCS#1 v1.5 (deterministic: compared byte for byte) and raw decryption.
		 */
		EVP_PKEY *k = i % 2 ? rsa_b : rsa_a;
		if (i % 3 == 2) {
			uint8_t c[256];
			RAND_bytes(c, sizeof(c));
			c[0] = 0;
			jobs[i] = job_for(k, KW_OP_RSA_DECRYPT, c, sizeof(c));
		} else {
			jobs[i] = job_for(k, KW_OP_RSA_SIGN_SHA256, digest[i], 32);
		}
	}
	struct kwd_batcher *base = kwd_rsa_batcher_base(b);
	base->run(base, jobs, 9);
	CHECK_EQ(atomic_load(&m.rsa_batches), 1);
	CHECK_EQ(atomic_load(&m.rsa_batch_lanes), 5);
	CHECK_EQ(atomic_load(&m.rsa_batch_fallbacks), 4);
	for (int i = 0; i < 9; i++) {
		CHECK(same_as_inline(e, jobs[i]));
		CHECK_EQ(jobs[i]->res.len, 256);
		job_free(jobs[i]);
	}

	/* A lane the kernel refuses (a ciphertext not below n) costs its request only. */
	uint8_t ff[256];
	memset(ff, 0xff, sizeof(ff));
	setenv("KEYWAY_RSA_BATCH_MIN_LANES", "1", 1);
	jobs[0] = job_for(rsa_a, KW_OP_RSA_DECRYPT, ff, sizeof(ff));
	jobs[1] = job_for(rsa_a, KW_OP_RSA_SIGN_SHA256, digest[0], 32);
	base->run(base, jobs, 2);
	CHECK(jobs[0]->res.opcode == KW_OP_ERROR && jobs[0]->res.error == KW_ERR_CRYPTO);
	CHECK(same_as_inline(e, jobs[1]));
	CHECK_EQ(atomic_load(&m.rsa_batches), 2);
	job_free(jobs[0]);
	job_free(jobs[1]);
	unsetenv("KEYWAY_RSA_BATCH_MIN_LANES");
	kwd_exec_free(e);
	kwd_rsa_batcher_free(b);
}

int main(void)
{
	char *dir = make_tmpdir();
	char err[256];
	struct kwd_keystore_options o = {.rsa_batch = true};

	rsa_a = gen_rsa(2048);
	rsa_b = gen_rsa(2048);
	p256 = gen_ec("P-256");
	CHECK(rsa_a && rsa_b && p256);
	CHECK_EQ(write_key(join(dir, "a.key"), rsa_a, FMT_PKCS8_PEM, 0600), 0);
	CHECK_EQ(write_key(join(dir, "b.key"), rsa_b, FMT_DER, 0600), 0);
	CHECK_EQ(write_key(join(dir, "p.key"), p256, FMT_PKCS8_PEM, 0600), 0);
	CHECK_EQ(kwd_keystore_load(dir, &o, &ks, err, sizeof(err)), 0);
	CHECK_EQ(kwd_gen_new(&gen, 1, ks, NULL), 0);
	test_keystore_and_takes();
	test_even_batches();
	kwd_gen_unref(gen); /* frees ks */
	EVP_PKEY_free(rsa_a);
	EVP_PKEY_free(rsa_b);
	EVP_PKEY_free(p256);
	rm_tree(dir);
	CHECK_DONE();
}
