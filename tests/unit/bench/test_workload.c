/*
 * test_workload.c - keyway-bench's requests are well formed and its answer
 * checks accept right answers and catch wrong ones, signatures included.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "workload.h"

static EVP_PKEY *keygen(const char *alg, const char *param)
{
	if (strcmp(alg, "RSA") == 0)
		return EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	if (param != NULL)
		return EVP_PKEY_Q_keygen(NULL, NULL, alg, param);
	return EVP_PKEY_Q_keygen(NULL, NULL, alg);
}

/* sign answers request i as a keyserver would. */
static size_t sign(EVP_PKEY *key, const struct kwb_workload *w, unsigned i, uint8_t *out,
                   size_t outlen)
{
	size_t n = outlen;
	int ok;

	if (w->op == KWB_OP_ED25519) {
		EVP_MD_CTX *md = EVP_MD_CTX_new();
		ok = EVP_DigestSignInit(md, NULL, NULL, NULL, key) == 1 &&
		     EVP_DigestSign(md, out, &n, w->data[i], w->len) == 1;
		EVP_MD_CTX_free(md);
	} else {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
		if (w->op == KWB_OP_RSA_DECRYPT) {
			ok = EVP_PKEY_decrypt_init(ctx) == 1 &&
			     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
			     EVP_PKEY_decrypt(ctx, out, &n, w->data[i], w->len) == 1;
		} else {
			ok = EVP_PKEY_sign_init(ctx) == 1 &&
			     EVP_PKEY_CTX_set_signature_md(ctx, EVP_sha256()) == 1;
			if (ok && w->op == KWB_OP_RSA_PSS_SHA256)
				ok =
				    EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
				    EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) ==
				        1;
			ok = ok && EVP_PKEY_sign(ctx, out, &n, w->data[i], w->len) == 1;
		}
		EVP_PKEY_CTX_free(ctx);
	}
	CHECK(ok);
	return ok ? n : 0;
}

static void check_op(enum kwb_op op, EVP_PKEY *key, uint8_t opcode, size_t len)
{
	static struct kwb_workload w;
	char err[256];
	uint8_t ski[KW_SKI_LEN], ans[1024];

	EVP_PKEY_up_ref(key);
	CHECK_EQ(kwb_workload_init(&w, op, key, err, sizeof(err)), 0);
	CHECK_EQ(kw_key_ski(key, ski), 0);
	CHECK_EQ(w.len, len);
	for (unsigned i = 0; i < KWB_NPAYLOADS; i++) {
		CHECK(w.msgs[i].has_opcode && w.msgs[i].opcode == opcode);
		CHECK(w.msgs[i].payload.data == w.data[i] && w.msgs[i].payload.len == len);
		CHECK(w.msgs[i].has_ski && memcmp(w.msgs[i].ski, ski, KW_SKI_LEN) == 0);
	}
	CHECK(memcmp(w.data[0], w.data[1], len) != 0); /* random, not constant */

	for (unsigned i = 0; i < 3; i++) {
		size_t n = sign(key, &w, i, ans, sizeof(ans));
		CHECK_EQ(kwb_check(&w, i, ans, n, true), 0);
		CHECK_EQ(kwb_check(&w, i, ans, n, false), 0);
		/* The answer to another request does not check out. */
		if (op == KWB_OP_RSA_DECRYPT)
			CHECK_EQ(kwb_check(&w, i + 1, ans, n, false), -KW_EPROTO);
		else
			CHECK_EQ(kwb_check(&w, i + 1, ans, n, true), -KW_ECRYPTO);
		/* Nor does a damaged one. */
		ans[n - 1] ^= 1;
		if (op == KWB_OP_RSA_DECRYPT)
			CHECK_EQ(kwb_check(&w, i, ans, n, false), -KW_EPROTO);
		else
			CHECK_EQ(kwb_check(&w, i, ans, n, true), -KW_ECRYPTO);
		CHECK_EQ(kwb_check(&w, i, ans, n - 1, false), -KW_EPROTO);
	}
	kwb_workload_cleanup(&w);
}

int main(void)
{
	static struct kwb_workload w;
	char err[256];
	EVP_PKEY *rsa = keygen("RSA", NULL), *ec = keygen("EC", "P-256"),
	         *ed = keygen("ED25519", NULL);

	CHECK(rsa != NULL && ec != NULL && ed != NULL);
	check_op(KWB_OP_RSA_PKCS1_SHA256, rsa, KW_OP_RSA_SIGN_SHA256, 32);
	check_op(KWB_OP_RSA_PSS_SHA256, rsa, KW_OP_RSA_PSS_SIGN_SHA256, 32);
	check_op(KWB_OP_RSA_DECRYPT, rsa, KW_OP_RSA_DECRYPT, 256);
	check_op(KWB_OP_ECDSA_SHA256, ec, KW_OP_ECDSA_SIGN_SHA256, 32);
	check_op(KWB_OP_ED25519, ed, KW_OP_ED25519_SIGN, 64);

	/* Ping: no key needed, the echo is checked. */
	CHECK_EQ(kwb_workload_init(&w, KWB_OP_PING, NULL, err, sizeof(err)), 0);
	CHECK(w.msgs[0].opcode == KW_OP_PING && !w.msgs[0].has_ski);
	CHECK_EQ(kwb_check(&w, 2, w.data[2], w.len, true), 0);
	CHECK_EQ(kwb_check(&w, 2, w.data[3], w.len, true), -KW_EPROTO);
	CHECK_EQ(kwb_check(&w, 2, w.data[2], w.len - 1, true), -KW_EPROTO);
	kwb_workload_cleanup(&w);

	/* A key that does not suit the operation, or none, is refused with a reason. */
	EVP_PKEY_up_ref(ec);
	CHECK_EQ(kwb_workload_init(&w, KWB_OP_ED25519, ec, err, sizeof(err)), -EINVAL);
	CHECK(strstr(err, "Ed25519") != NULL);
	kwb_workload_cleanup(&w);
	EVP_PKEY_up_ref(ed);
	CHECK_EQ(kwb_workload_init(&w, KWB_OP_RSA_DECRYPT, ed, err, sizeof(err)), -EINVAL);
	kwb_workload_cleanup(&w);
	CHECK_EQ(kwb_workload_init(&w, KWB_OP_ECDSA_SHA256, NULL, err, sizeof(err)), -EINVAL);
	kwb_workload_cleanup(&w);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	CHECK_DONE();
}
