/* workload.c - keyway-bench requests and answer checks (see workload.h). */
#include "workload.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "keyway/err.h"
#include "keyway/keyid.h"

const char *const kwb_op_names[] = {
    "ping", "rsa-pkcs1-sha256", "rsa-pss-sha256", "ecdsa-sha256", "ed25519", "rsa-decrypt", NULL,
};

static const uint8_t opcodes[] = {
    [KWB_OP_PING] = KW_OP_PING,
    [KWB_OP_RSA_PKCS1_SHA256] = KW_OP_RSA_SIGN_SHA256,
    [KWB_OP_RSA_PSS_SHA256] = KW_OP_RSA_PSS_SIGN_SHA256,
    [KWB_OP_ECDSA_SHA256] = KW_OP_ECDSA_SIGN_SHA256,
    [KWB_OP_ED25519] = KW_OP_ED25519_SIGN,
    [KWB_OP_RSA_DECRYPT] = KW_OP_RSA_DECRYPT,
};

static bool is_rsa_op(enum kwb_op op)
{
	return op == KWB_OP_RSA_PKCS1_SHA256 || op == KWB_OP_RSA_PSS_SHA256 ||
	       op == KWB_OP_RSA_DECRYPT;
}

static int check_key_type(enum kwb_op op, const EVP_PKEY *key, char *err, size_t errlen)
{
	const char *want = NULL;

	if (op == KWB_OP_PING)
		return 0;
	if (key == NULL) {
		snprintf(err, errlen, "--op %s needs --key (certificate, public or private key)",
		         kwb_op_names[op]);
		return -EINVAL;
	}
	if (is_rsa_op(op) && !EVP_PKEY_is_a(key, "RSA"))
		want = "an RSA";
	else if (op == KWB_OP_ECDSA_SHA256 && !EVP_PKEY_is_a(key, "EC"))
		want = "an EC";
	else if (op == KWB_OP_ED25519 && !EVP_PKEY_is_a(key, "ED25519"))
		want = "an Ed25519";
	if (want != NULL) {
		snprintf(err, errlen, "--op %s needs %s key; --key is %s", kwb_op_names[op], want,
		         EVP_PKEY_get0_type_name(key));
		return -EINVAL;
	}
	return 0;
}

/* rsa_encrypt makes the request block: the secret, PKCS#1 v1.5-encrypted to the key. */
static int rsa_encrypt(EVP_PKEY *key, uint8_t *out, size_t outlen, const uint8_t *secret)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	size_t n = outlen;
	int rc = -KW_ECRYPTO;

	if (ctx != NULL && EVP_PKEY_encrypt_init(ctx) == 1 &&
	    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
	    EVP_PKEY_encrypt(ctx, out, &n, secret, KWB_SECRET_LEN) == 1 && n == outlen)
		rc = 0;
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

int kwb_workload_init(struct kwb_workload *w, enum kwb_op op, EVP_PKEY *key, char *err,
                      size_t errlen)
{
	int rc;
	uint8_t ski[KW_SKI_LEN];

	memset(w, 0, sizeof(*w));
	w->op = op;
	w->key = key;
	rc = check_key_type(op, key, err, errlen);
	if (rc < 0)
		return rc;
	if (key != NULL && kw_key_ski(key, ski) < 0) {
		snprintf(err, errlen, "cannot compute the key's SKI");
		return -KW_ECRYPTO;
	}

	switch (op) {
	case KWB_OP_PING:
		w->len = 32;
		break;
	case KWB_OP_ED25519:
		w->len = 64;
		break;
	case KWB_OP_RSA_DECRYPT:
		w->len = (size_t)EVP_PKEY_get_size(key);
		if (w->len > KWB_MAX_PAYLOAD || w->len < KWB_SECRET_LEN + 11) {
			snprintf(err, errlen, "RSA key of %zu bytes not supported", w->len);
			return -EINVAL;
		}
		break;
	default:
		w->len = 32; /* a SHA-256 digest */
		break;
	}

	for (unsigned i = 0; i < KWB_NPAYLOADS; i++) {
		struct kw_msg *m = &w->msgs[i];
		if (op == KWB_OP_RSA_DECRYPT) {
			if (RAND_bytes(w->secret[i], KWB_SECRET_LEN) != 1 ||
			    rsa_encrypt(key, w->data[i], w->len, w->secret[i]) < 0) {
				snprintf(err, errlen, "cannot RSA-encrypt the test secret");
				ERR_clear_error();
				return -KW_ECRYPTO;
			}
		} else if (RAND_bytes(w->data[i], (int)w->len) != 1) {
			snprintf(err, errlen, "no randomness");
			return -KW_ECRYPTO;
		}
		m->has_opcode = true;
		m->opcode = opcodes[op];
		m->payload.data = w->data[i];
		m->payload.len = w->len;
		if (key != NULL && op != KWB_OP_PING) {
			m->has_ski = true;
			memcpy(m->ski, ski, sizeof(ski));
		}
	}
	return 0;
}

void kwb_workload_cleanup(struct kwb_workload *w)
{
	EVP_PKEY_free(w->key);
	w->key = NULL;
	OPENSSL_cleanse(w->secret, sizeof(w->secret));
}

static int verify_sig(const struct kwb_workload *w, unsigned i, const uint8_t *sig, size_t len)
{
	int ok = 0;

	if (w->op == KWB_OP_ED25519) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		ok = md != NULL && EVP_DigestVerifyInit(md, NULL, NULL, NULL, w->key) == 1 &&
		     EVP_DigestVerify(md, sig, len, w->data[i], w->len) == 1;
		EVP_MD_CTX_free(md);
	} else {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, w->key, NULL);
		ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
		if (ok && w->op == KWB_OP_RSA_PKCS1_SHA256)
			ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
		if (ok && w->op == KWB_OP_RSA_PSS_SHA256)
			ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
			     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
			     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, EVP_sha256()) == 1;
		ok = ok && EVP_PKEY_verify(ctx, sig, len, w->data[i], w->len) == 1;
		EVP_PKEY_CTX_free(ctx);
	}
	ERR_clear_error();
	return ok ? 0 : -KW_ECRYPTO;
}

int kwb_check(const struct kwb_workload *w, unsigned i, const uint8_t *p, size_t len, bool verify)
{
	switch (w->op) {
	case KWB_OP_PING:
		return len == w->len && memcmp(p, w->data[i], len) == 0 ? 0 : -KW_EPROTO;
	case KWB_OP_RSA_DECRYPT:
		/* gokeyless answers the raw block: 00 02 <nonzero padding> 00 <secret>. */
		if (len != w->len || p[0] != 0x00 || p[1] != 0x02 ||
		    p[len - KWB_SECRET_LEN - 1] != 0x00 ||
		    memcmp(p + len - KWB_SECRET_LEN, w->secret[i], KWB_SECRET_LEN) != 0)
			return -KW_EPROTO;
		return 0;
	case KWB_OP_RSA_PKCS1_SHA256:
	case KWB_OP_RSA_PSS_SHA256:
		if (len != (size_t)EVP_PKEY_get_size(w->key))
			return -KW_EPROTO;
		break;
	case KWB_OP_ED25519:
		if (len != 64)
			return -KW_EPROTO;
		break;
	case KWB_OP_ECDSA_SHA256:
		/* A DER SEQUENCE (of two INTEGERs) whose length covers the answer exactly. */
		if (len < 8 || p[0] != 0x30 || len > (size_t)EVP_PKEY_get_size(w->key))
			return -KW_EPROTO;
		if (p[1] < 0x80 ? (size_t)p[1] + 2 != len : p[1] != 0x81 || (size_t)p[2] + 3 != len)
			return -KW_EPROTO;
		break;
	}
	return verify ? verify_sig(w, i, p, len) : 0;
}
