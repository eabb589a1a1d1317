/*
 * backend_fixture.h - what the inline and threads backend tests share: heap
 * ops carrying their own input (as an owner that may go away must), a
 * signature check with the public key, and polling until ops complete.
 */
#ifndef KW_TEST_BACKEND_FIXTURE_H
#define KW_TEST_BACKEND_FIXTURE_H

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "keyway/offload.h"

static EVP_PKEY *rsa, *p256;
static int released;

/* A heap op carrying its own input, as an owner that may go away must. */
struct top {
	struct kw_op op;
	uint8_t digest[32];
	int done_calls;
	int status_seen;
};

static inline void on_done(struct kw_op *op, void *arg)
{
	struct top *t = arg;
	t->done_calls++;
	t->status_seen = op->status;
}

static inline void on_release(struct kw_op *op)
{
	released++;
	free(op);
}

static inline struct top *new_op(EVP_PKEY *key)
{
	struct top *t = calloc(1, sizeof(*t));
	kw_op_init(&t->op, KW_OPK_ASYM,
	           key == rsa ? KW_OP_RSA_PSS_SIGN_SHA256 : KW_OP_ECDSA_SIGN_SHA256);
	RAND_bytes(t->digest, sizeof(t->digest));
	t->op.pkey = key;
	t->op.in = t->digest;
	t->op.in_len = sizeof(t->digest);
	t->op.done = on_done;
	t->op.done_arg = t;
	t->op.release = on_release;
	return t;
}

static inline int verifies(const struct top *t)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, t->op.pkey, NULL);
	int ok = EVP_PKEY_verify_init(c) == 1;
	if (ok && t->op.pkey == rsa)
		ok = EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(c, EVP_sha256()) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(c, 32) == 1;
	ok = ok && EVP_PKEY_verify(c, t->op.out, t->op.out_len, t->digest, 32) == 1;
	EVP_PKEY_CTX_free(c);
	return ok;
}

static inline void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	nanosleep(&ts, NULL);
}

/* poll_all polls b until n ops have completed or 10 s pass. */
static inline int poll_all(struct kw_backend *b, int n)
{
	int got = 0;
	uint64_t end = kw_now_ns() + 10000000000ull;
	while (got < n && kw_now_ns() < end) {
		int r = kw_backend_poll(b, 1000);
		if (r == 0)
			sleep_ms(1);
		got += r;
	}
	return got;
}

/* backend_fixture_keys makes the RSA-2048 and P-256 keys the ops sign with. */
static inline void backend_fixture_keys(void)
{
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(rsa != NULL && p256 != NULL);
}

static inline void backend_fixture_free(void)
{
	kw_op_compute_thread_cleanup();
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p256);
}

#endif
