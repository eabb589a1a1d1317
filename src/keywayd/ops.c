/*
 * ops.c - answering one keyless request (see ops.h and the answer table in
 * docs/protocol.md).
 *
 * OpenSSL 3.0 spends a good part of a small operation fetching algorithms and
 * building contexts, so a signer keeps one initialised EVP_PKEY_CTX per (key,
 * operation) -- padding, digest and salt length set once -- and the hot path
 * is a single EVP_PKEY_sign/EVP_PKEY_decrypt. Ed25519 has no EVP_PKEY_sign in
 * 3.0; it reuses one EVP_MD_CTX per key instead.
 */
#include "ops.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

/* Context slots per key; an EC key uses SLOT_EC for every hash (see op_desc). */
enum slot {
	SLOT_RSA_DECRYPT,
	SLOT_RSA_MD5SHA1,
	SLOT_RSA_SHA1,
	SLOT_RSA_SHA224,
	SLOT_RSA_SHA256,
	SLOT_RSA_SHA384,
	SLOT_RSA_SHA512,
	SLOT_PSS_SHA256,
	SLOT_PSS_SHA384,
	SLOT_PSS_SHA512,
	NSLOTS,
	SLOT_EC = 0,
};

enum op_kind { OP_DECRYPT, OP_PKCS1, OP_PSS, OP_ECDSA, OP_ED25519 };

struct op_desc {
	enum kwd_key_type key_type;
	enum op_kind kind;
	enum slot slot;
	size_t hash_len; /* required payload length; 0 = any (Ed25519) or up to k (decrypt) */
	const char *md;  /* digest of the DigestInfo / PSS, NULL for none */
};

/*
 * The key operations, indexed by opcode; key_type 0 for everything else.
 * ECDSA gets no digest in its context: it signs the given bytes (truncated
 * to the order, as Go does), and OpenSSL would refuse MD5-SHA1 there anyway.
 * Length checks are ours, so all ECDSA opcodes share one context.
 */
static const struct op_desc op_table[256] = {
    [KW_OP_RSA_DECRYPT] = {KWD_KEY_RSA, OP_DECRYPT, SLOT_RSA_DECRYPT, 0, NULL},
    [KW_OP_RSA_SIGN_MD5SHA1] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_MD5SHA1, 36, "MD5-SHA1"},
    [KW_OP_RSA_SIGN_SHA1] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_SHA1, 20, "SHA1"},
    [KW_OP_RSA_SIGN_SHA224] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_SHA224, 28, "SHA224"},
    [KW_OP_RSA_SIGN_SHA256] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_SHA256, 32, "SHA256"},
    [KW_OP_RSA_SIGN_SHA384] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_SHA384, 48, "SHA384"},
    [KW_OP_RSA_SIGN_SHA512] = {KWD_KEY_RSA, OP_PKCS1, SLOT_RSA_SHA512, 64, "SHA512"},
    [KW_OP_RSA_PSS_SIGN_SHA256] = {KWD_KEY_RSA, OP_PSS, SLOT_PSS_SHA256, 32, "SHA256"},
    [KW_OP_RSA_PSS_SIGN_SHA384] = {KWD_KEY_RSA, OP_PSS, SLOT_PSS_SHA384, 48, "SHA384"},
    [KW_OP_RSA_PSS_SIGN_SHA512] = {KWD_KEY_RSA, OP_PSS, SLOT_PSS_SHA512, 64, "SHA512"},
    [KW_OP_ECDSA_SIGN_MD5SHA1] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 36, NULL},
    [KW_OP_ECDSA_SIGN_SHA1] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 20, NULL},
    [KW_OP_ECDSA_SIGN_SHA224] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 28, NULL},
    [KW_OP_ECDSA_SIGN_SHA256] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 32, NULL},
    [KW_OP_ECDSA_SIGN_SHA384] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 48, NULL},
    [KW_OP_ECDSA_SIGN_SHA512] = {KWD_KEY_EC, OP_ECDSA, SLOT_EC, 64, NULL},
    [KW_OP_ED25519_SIGN] = {KWD_KEY_ED25519, OP_ED25519, 0, 0, NULL},
};

struct key_cache {
	EVP_PKEY_CTX *pctx[NSLOTS];
	EVP_MD_CTX *mctx; /* Ed25519 */
};

struct kwd_signer {
	uint64_t ks_id; /* keystore the cache belongs to; 0 = none */
	size_t nkeys;
	struct key_cache *keys; /* nkeys entries, indexed by kwd_key.index */
	bool ed25519_reinit;    /* this OpenSSL refuses a second DigestSign per init */
};

int kwd_signer_new(struct kwd_signer **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : -ENOMEM;
}

void kwd_signer_reset(struct kwd_signer *s)
{
	for (size_t i = 0; i < s->nkeys; i++) {
		for (int j = 0; j < NSLOTS; j++)
			EVP_PKEY_CTX_free(s->keys[i].pctx[j]);
		EVP_MD_CTX_free(s->keys[i].mctx);
	}
	free(s->keys);
	s->keys = NULL;
	s->nkeys = 0;
	s->ks_id = 0;
}

void kwd_signer_free(struct kwd_signer *s)
{
	if (s == NULL)
		return;
	kwd_signer_reset(s);
	free(s);
}

static int rebind(struct kwd_signer *s, const struct kwd_keystore *ks)
{
	kwd_signer_reset(s);
	size_t n = kwd_keystore_count(ks);
	s->keys = calloc(n, sizeof(*s->keys));
	if (s->keys == NULL)
		return -ENOMEM;
	s->nkeys = n;
	s->ks_id = kwd_keystore_id(ks);
	return 0;
}

static EVP_PKEY_CTX *new_pctx(const struct kwd_key *key, const struct op_desc *d)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key->pkey, NULL);
	const EVP_MD *md = NULL;
	bool ok = false;

	if (ctx == NULL)
		return NULL;
	if (d->md != NULL && (md = EVP_get_digestbyname(d->md)) == NULL)
		goto out;
	switch (d->kind) {
	case OP_DECRYPT:
		ok = EVP_PKEY_decrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1;
		break;
	case OP_PKCS1:
		ok = EVP_PKEY_sign_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
		break;
	case OP_PSS:
		ok = EVP_PKEY_sign_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
		break;
	case OP_ECDSA:
		ok = EVP_PKEY_sign_init(ctx) == 1;
		break;
	case OP_ED25519:
		break;
	}
out:
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

static void set_error(struct kwd_result *res, enum kw_proto_error e)
{
	res->opcode = KW_OP_ERROR;
	res->error = (uint8_t)e;
	res->buf[0] = (uint8_t)e;
	res->payload = res->buf;
	res->len = 1;
}

static void set_output(struct kwd_result *res, size_t len)
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

/*
 * find_key returns the key or the error to answer (docs/protocol.md §7): a
 * valid SKI wins, else a valid digest; all-zero identifiers count as absent.
 */
static const struct kwd_key *find_key(const struct kwd_keystore *ks, const struct kw_msg *req,
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

static int sign_ed25519(struct kwd_signer *s, struct key_cache *c, const struct kwd_key *key,
                        const struct kw_bytes *msg, struct kwd_result *res)
{
	static const uint8_t empty[1];
	const uint8_t *m = msg->data != NULL ? msg->data : empty;
	size_t siglen = sizeof(res->buf);

	if (c->mctx == NULL) {
		if ((c->mctx = EVP_MD_CTX_new()) == NULL)
			return -1;
		if (EVP_DigestSignInit(c->mctx, NULL, NULL, NULL, key->pkey) != 1)
			goto fail;
	} else if (s->ed25519_reinit) {
		if (EVP_DigestSignInit(c->mctx, NULL, NULL, NULL, key->pkey) != 1)
			goto fail;
	}
	/*
	 * OpenSSL 3.0 lets one initialised context sign any number of
	 * messages (Ed25519 is one-shot and stateless), which saves a fetch
	 * per request. Newer releases may refuse a second use: then re-init
	 * from now on.
	 */
	if (EVP_DigestSign(c->mctx, res->buf, &siglen, m, msg->len) != 1) {
		if (s->ed25519_reinit)
			goto fail;
		ERR_clear_error();
		s->ed25519_reinit = true;
		siglen = sizeof(res->buf);
		if (EVP_DigestSignInit(c->mctx, NULL, NULL, NULL, key->pkey) != 1 ||
		    EVP_DigestSign(c->mctx, res->buf, &siglen, m, msg->len) != 1)
			goto fail;
	}
	set_output(res, siglen);
	return 0;
fail:
	/* A half-initialised context must not be reused. */
	EVP_MD_CTX_free(c->mctx);
	c->mctx = NULL;
	return -1;
}

static int run(struct kwd_signer *s, const struct kwd_key *key, const struct op_desc *d,
               const struct kw_bytes *payload, struct kwd_result *res)
{
	struct key_cache *c = &s->keys[key->index];
	size_t outlen = sizeof(res->buf);

	if (d->kind == OP_ED25519)
		return sign_ed25519(s, c, key, payload, res);

	EVP_PKEY_CTX *ctx = c->pctx[d->slot];
	if (ctx == NULL && (ctx = c->pctx[d->slot] = new_pctx(key, d)) == NULL)
		return -1;
	if (d->kind == OP_DECRYPT) {
		/*
		 * The ciphertext is an integer of at most k bytes (TLS sends
		 * exactly k); OpenSSL checks it is below n and, with no
		 * padding, returns c^d mod n as k bytes.
		 */
		static const uint8_t zero[1];
		size_t k = (size_t)EVP_PKEY_get_size(key->pkey);
		const uint8_t *in = payload->data != NULL ? payload->data : zero;
		if (payload->len > k || k > sizeof(res->buf) ||
		    EVP_PKEY_decrypt(ctx, res->buf, &outlen, in, payload->len) != 1 || outlen > k)
			return -1;
		if (outlen < k) {
			memmove(res->buf + (k - outlen), res->buf, outlen);
			memset(res->buf, 0, k - outlen);
		}
		set_output(res, k);
		return 0;
	}
	if (EVP_PKEY_sign(ctx, res->buf, &outlen, payload->data, payload->len) != 1)
		return -1;
	set_output(res, outlen);
	return 0;
}

void kwd_execute(struct kwd_signer *s, const struct kwd_keystore *ks, const struct kw_msg *req,
                 struct kwd_result *res)
{
	enum kw_proto_error err = KW_ERR_NONE;
	const struct op_desc *d;
	const struct kwd_key *key;

	res->payload = NULL;
	res->len = 0;
	if (!req->has_opcode) {
		set_error(res, KW_ERR_BAD_OPCODE);
		return;
	}
	switch (req->opcode) {
	case KW_OP_PING:
		res->opcode = KW_OP_PONG;
		res->error = KW_ERR_NONE;
		res->payload = req->payload.data;
		res->len = req->payload.data != NULL ? req->payload.len : 0;
		return;
	case KW_OP_RESPONSE:
	case KW_OP_PONG:
	case KW_OP_ERROR:
		set_error(res, KW_ERR_UNEXPECTED_OPCODE);
		return;
	}
	d = &op_table[req->opcode];
	if (d->key_type == 0) {
		set_error(res, KW_ERR_BAD_OPCODE);
		return;
	}
	if ((key = find_key(ks, req, &err)) == NULL) {
		set_error(res, err);
		return;
	}
	size_t plen = req->payload.data != NULL ? req->payload.len : 0;
	if (key->type != d->key_type || (d->hash_len != 0 && plen != d->hash_len)) {
		set_error(res, KW_ERR_CRYPTO);
		return;
	}
	if (s->ks_id != kwd_keystore_id(ks) || key->index >= s->nkeys) {
		if (rebind(s, ks) != 0) {
			set_error(res, KW_ERR_INTERNAL);
			return;
		}
	}
	struct kw_bytes payload = {req->payload.data, plen};
	if (run(s, key, d, &payload, res) != 0) {
		/* Don't let one bad request's errors pile up in this thread's queue. */
		ERR_clear_error();
		OPENSSL_cleanse(res->buf, sizeof(res->buf));
		set_error(res, KW_ERR_CRYPTO);
	}
}

void kwd_result_cleanse(struct kwd_result *res)
{
	if (res->payload == res->buf && res->len > 0)
		OPENSSL_cleanse(res->buf,
		                res->len <= sizeof(res->buf) ? res->len : sizeof(res->buf));
	res->payload = NULL;
	res->len = 0;
}
