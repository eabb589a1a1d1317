/*
 * exec.c - answering one keyless request (see exec.h and the answer table in
 * docs/protocol.md).
 *
 * OpenSSL 3.0 spends a good part of a small operation fetching algorithms and
 * building contexts, so an executor keeps one initialised EVP_PKEY_CTX per (key,
 * operation) -- padding, digest and salt length set once -- and the hot path
 * is a single EVP_PKEY_sign/EVP_PKEY_decrypt. Ed25519 has no EVP_PKEY_sign in
 * 3.0; it reuses one EVP_MD_CTX per key instead.
 */
#include "exec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "keyway/opcodes.h"

struct key_cache {
	EVP_PKEY_CTX *pctx[KW_OPCODE_SLOTS];
	struct kw_ed25519_signer ed25519;
};

struct kwd_exec {
	uint64_t ks_id; /* keystore the cache belongs to; 0 = none */
	size_t nkeys;
	struct key_cache *keys; /* nkeys entries, indexed by kwd_key.index */
};

int kwd_exec_new(struct kwd_exec **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : -ENOMEM;
}

void kwd_exec_reset(struct kwd_exec *e)
{
	for (size_t i = 0; i < e->nkeys; i++) {
		for (int j = 0; j < KW_OPCODE_SLOTS; j++)
			EVP_PKEY_CTX_free(e->keys[i].pctx[j]);
		kw_ed25519_signer_cleanup(&e->keys[i].ed25519);
	}
	free(e->keys);
	e->keys = NULL;
	e->nkeys = 0;
	e->ks_id = 0;
}

void kwd_exec_free(struct kwd_exec *e)
{
	if (e == NULL)
		return;
	kwd_exec_reset(e);
	free(e);
}

static int rebind(struct kwd_exec *e, const struct kwd_keystore *ks)
{
	kwd_exec_reset(e);
	size_t n = kwd_keystore_count(ks);
	e->keys = calloc(n, sizeof(*e->keys));
	if (e->keys == NULL)
		return -ENOMEM;
	e->nkeys = n;
	e->ks_id = kwd_keystore_id(ks);
	return 0;
}

void kwd_exec_result_error(struct kwd_exec_result *res, enum kw_proto_error e)
{
	res->opcode = KW_OP_ERROR;
	res->error = (uint8_t)e;
	res->buf[0] = (uint8_t)e;
	res->payload = res->buf;
	res->len = 1;
}

void kwd_exec_result_output(struct kwd_exec_result *res, size_t len)
{
	res->opcode = KW_OP_RESPONSE;
	res->error = KW_ERR_NONE;
	res->payload = res->buf;
	res->len = len;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	uint8_t acc = 0;
	for (size_t i = 0; i < n; i++)
		acc |= p[i];
	return acc == 0;
}

const struct kwd_key *kwd_exec_find_key(const struct kwd_keystore *ks, const struct kw_msg *req,
                                        enum kw_proto_error *err)
{
	const struct kwd_key *k;

	if (req->has_ski && !all_zero(req->ski, KW_SKI_LEN))
		k = kwd_keystore_find_ski(ks, req->ski);
	else if (req->has_digest && !all_zero(req->digest, KW_DIGEST_LEN))
		k = kwd_keystore_find_digest(ks, req->digest);
	else {
		*err = KW_ERR_INTERNAL; /* gokeyless: an invalid SKI fails the keystore lookup */
		return NULL;
	}
	if (k == NULL)
		*err = KW_ERR_KEY_NOT_FOUND;
	return k;
}

static int run(struct kwd_exec *e, const struct kwd_key *key, const struct kw_opcode_desc *d,
               const struct kw_bytes *payload, struct kwd_exec_result *res)
{
	struct key_cache *c = &e->keys[key->index];
	size_t outlen = 0;
	int rc;

	if (d->alg == KW_ALG_ED25519) {
		rc = kw_ed25519_sign(&c->ed25519, key->pkey, res->buf, sizeof(res->buf), &outlen,
		                     payload->data, payload->len);
	} else {
		EVP_PKEY_CTX *ctx = c->pctx[d->slot];
		if (ctx == NULL &&
		    (ctx = c->pctx[d->slot] = kw_opcode_pctx_new(key->pkey, d)) == NULL)
			return -1;
		rc = kw_opcode_pctx_run(ctx, d, key->pkey, res->buf, sizeof(res->buf), &outlen,
		                        payload->data, payload->len);
	}
	if (rc != 0)
		return -1;
	kwd_exec_result_output(res, outlen);
	return 0;
}

int kwd_exec_prepare(const struct kwd_keystore *ks, const struct kw_msg *req,
                     struct kwd_exec_op *op, struct kwd_exec_result *res)
{
	enum kw_proto_error err = KW_ERR_NONE;

	res->payload = NULL;
	res->len = 0;
	if (!req->has_opcode) {
		kwd_exec_result_error(res, KW_ERR_BAD_OPCODE);
		return 1;
	}
	switch (req->opcode) {
	case KW_OP_PING:
		res->opcode = KW_OP_PONG;
		res->error = KW_ERR_NONE;
		res->payload = req->payload.data;
		res->len = req->payload.data != NULL ? req->payload.len : 0;
		return 1;
	case KW_OP_RESPONSE:
	case KW_OP_PONG:
	case KW_OP_ERROR:
		kwd_exec_result_error(res, KW_ERR_UNEXPECTED_OPCODE);
		return 1;
	}
	op->desc = kw_opcode_desc(req->opcode);
	if (op->desc == NULL) {
		kwd_exec_result_error(res, KW_ERR_BAD_OPCODE);
		return 1;
	}
	if ((op->key = kwd_exec_find_key(ks, req, &err)) == NULL) {
		kwd_exec_result_error(res, err);
		return 1;
	}
	size_t plen = req->payload.data != NULL ? req->payload.len : 0;
	if (!kw_opcode_check(op->desc, (int)op->key->type, plen)) {
		kwd_exec_result_error(res, KW_ERR_CRYPTO);
		return 1;
	}
	op->opcode = req->opcode;
	op->in = (struct kw_bytes){req->payload.data, plen};
	return 0;
}

void kwd_exec_key(struct kwd_exec *e, const struct kwd_keystore *ks, const struct kwd_exec_op *op,
                  struct kwd_exec_result *res)
{
	if (op->key->p11 != NULL) {
		/* A token key holds no private key here: only its device computes it. */
		kwd_exec_result_error(res, KW_ERR_INTERNAL);
		return;
	}
	if (e->ks_id != kwd_keystore_id(ks) || op->key->index >= e->nkeys) {
		if (rebind(e, ks) != 0) {
			kwd_exec_result_error(res, KW_ERR_INTERNAL);
			return;
		}
	}
	if (run(e, op->key, op->desc, &op->in, res) != 0) {
		/* Don't let one bad request's errors pile up in this thread's queue. */
		ERR_clear_error();
		OPENSSL_cleanse(res->buf, sizeof(res->buf));
		kwd_exec_result_error(res, KW_ERR_CRYPTO);
	}
}

void kwd_exec_run(struct kwd_exec *e, const struct kwd_keystore *ks, const struct kw_msg *req,
                  struct kwd_exec_result *res)
{
	struct kwd_exec_op op;
	if (kwd_exec_prepare(ks, req, &op, res) == 0)
		kwd_exec_key(e, ks, &op, res);
}

void kwd_exec_result_cleanse(struct kwd_exec_result *res)
{
	if (res->payload == res->buf && res->len > 0)
		OPENSSL_cleanse(res->buf,
		                res->len <= sizeof(res->buf) ? res->len : sizeof(res->buf));
	res->payload = NULL;
	res->len = 0;
}
