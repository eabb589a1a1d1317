/*
 * test_offload_compute.c - kw_op_compute on real keys: every key opcode's
 * result verified by OpenSSL with the public key, the error cases, and the
 * per-thread context cache across more keys than it holds and across threads.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/offload.h"
#include "keyway/opcodes.h"

static EVP_PKEY *rsa, *p256, *ed;

static const char *md_name(uint8_t opcode)
{
	switch (opcode) {
	case KW_OP_RSA_SIGN_MD5SHA1:
		return "MD5-SHA1";
	case KW_OP_RSA_SIGN_SHA1:
		return "SHA1";
	case KW_OP_RSA_SIGN_SHA224:
		return "SHA224";
	case KW_OP_RSA_SIGN_SHA256:
	case KW_OP_RSA_PSS_SIGN_SHA256:
		return "SHA256";
	case KW_OP_RSA_SIGN_SHA384:
	case KW_OP_RSA_PSS_SIGN_SHA384:
		return "SHA384";
	default:
		return "SHA512";
	}
}

/* verify checks op's result with the public half of its key. */
static int verify(const struct kw_op *op)
{
	const struct kw_opcode_desc *d = kw_opcode_desc(op->opcode);
	int ok = 0;

	if (d->alg == KW_ALG_ED25519) {
		EVP_MD_CTX *m = EVP_MD_CTX_new();
		ok = EVP_DigestVerifyInit(m, NULL, NULL, NULL, op->pkey) == 1 &&
		     EVP_DigestVerify(m, op->out, op->out_len, op->in, op->in_len) == 1;
		EVP_MD_CTX_free(m);
		return ok;
	}
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, op->pkey, NULL);
	const EVP_MD *md = EVP_get_digestbyname(md_name(op->opcode));
	if (EVP_PKEY_verify_init(c) != 1)
		goto out;
	if (d->alg == KW_ALG_RSA_PKCS1 &&
	    (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_signature_md(c, md) != 1))
		goto out;
	if (d->alg == KW_ALG_RSA_PSS &&
	    (EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PSS_PADDING) != 1 ||
	     EVP_PKEY_CTX_set_signature_md(c, md) != 1 ||
	     EVP_PKEY_CTX_set_rsa_mgf1_md(c, md) != 1 ||
	     EVP_PKEY_CTX_set_rsa_pss_saltlen(c, (int)d->hash_len) != 1))
		goto out;
	ok = EVP_PKEY_verify(c, op->out, op->out_len, op->in, op->in_len) == 1;
out:
	EVP_PKEY_CTX_free(c);
	return ok;
}

static int run_one(EVP_PKEY *key, uint8_t opcode, size_t len)
{
	uint8_t in[200];
	struct kw_op op;
	RAND_bytes(in, sizeof(in));
	kw_op_init(&op, KW_OPK_ASYM, opcode);
	op.pkey = key;
	op.in = in;
	op.in_len = len;
	int rc = kw_op_compute(&op);
	CHECK_EQ(rc, op.status);
	if (rc == 0 && !verify(&op)) {
		fprintf(stderr, "opcode 0x%02x: signature does not verify\n", opcode);
		check_failures++;
	}
	return rc;
}

static void check_decrypt(void)
{
	uint8_t msg[48], ct[256], zero[1] = {0};
	size_t ctlen = sizeof(ct);
	struct kw_op op;

	RAND_bytes(msg, sizeof(msg));
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, rsa, NULL);
	CHECK(EVP_PKEY_encrypt_init(c) == 1 &&
	      EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1);
	CHECK(EVP_PKEY_encrypt(c, ct, &ctlen, msg, sizeof(msg)) == 1);
	EVP_PKEY_CTX_free(c);

	kw_op_init(&op, KW_OPK_ASYM, KW_OP_RSA_DECRYPT);
	op.pkey = rsa;
	op.in = ct;
	op.in_len = ctlen;
	CHECK_EQ(kw_op_compute(&op), 0);
	/* The raw block: 00 02 <nonzero padding> 00 <message>, modulus-sized. */
	CHECK_EQ(op.out_len, 256);
	CHECK(op.out[0] == 0 && op.out[1] == 2 && op.out[256 - 49] == 0);
	CHECK(memcmp(op.out + 256 - 48, msg, 48) == 0);

	/* A short integer is left-padded to the modulus size. */
	op.in = zero;
	op.in_len = 1;
	CHECK_EQ(kw_op_compute(&op), 0);
	CHECK_EQ(op.out_len, 256);
	/* Longer than the modulus: refused. */
	uint8_t big[257] = {1};
	op.in = big;
	op.in_len = sizeof(big);
	CHECK_EQ(kw_op_compute(&op), -KW_ECRYPTO);
	CHECK_EQ(op.out_len, 0);
}

static void *thread_main(void *arg)
{
	/* Each thread builds its own cache and frees it at exit (ASan sees leaks otherwise). */
	for (int i = 0; i < 50; i++) {
		CHECK_EQ(run_one(rsa, KW_OP_RSA_PSS_SIGN_SHA256, 32), 0);
		CHECK_EQ(run_one(p256, KW_OP_ECDSA_SIGN_SHA256, 32), 0);
		CHECK_EQ(run_one(ed, KW_OP_ED25519_SIGN, 100), 0);
	}
	return arg;
}

int main(void)
{
	rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	p256 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	CHECK(rsa != NULL && p256 != NULL && ed != NULL);

	static const struct {
		uint8_t op;
		size_t len;
	} rsa_ops[] = {{KW_OP_RSA_SIGN_MD5SHA1, 36},    {KW_OP_RSA_SIGN_SHA1, 20},
	               {KW_OP_RSA_SIGN_SHA224, 28},     {KW_OP_RSA_SIGN_SHA256, 32},
	               {KW_OP_RSA_SIGN_SHA384, 48},     {KW_OP_RSA_SIGN_SHA512, 64},
	               {KW_OP_RSA_PSS_SIGN_SHA256, 32}, {KW_OP_RSA_PSS_SIGN_SHA384, 48},
	               {KW_OP_RSA_PSS_SIGN_SHA512, 64}};
	for (size_t i = 0; i < sizeof(rsa_ops) / sizeof(rsa_ops[0]); i++) {
		CHECK_EQ(run_one(rsa, rsa_ops[i].op, rsa_ops[i].len), 0);
		CHECK_EQ(run_one(rsa, rsa_ops[i].op, rsa_ops[i].len), 0); /* cached context */
	}
	static const uint8_t ec_ops[] = {KW_OP_ECDSA_SIGN_SHA1,   KW_OP_ECDSA_SIGN_SHA224,
	                                 KW_OP_ECDSA_SIGN_SHA256, KW_OP_ECDSA_SIGN_SHA384,
	                                 KW_OP_ECDSA_SIGN_SHA512, KW_OP_ECDSA_SIGN_MD5SHA1};
	static const size_t ec_lens[] = {20, 28, 32, 48, 64, 36};
	for (size_t i = 0; i < sizeof(ec_ops); i++)
		CHECK_EQ(run_one(p256, ec_ops[i], ec_lens[i]), 0);
	CHECK_EQ(run_one(ed, KW_OP_ED25519_SIGN, 0), 0);
	CHECK_EQ(run_one(ed, KW_OP_ED25519_SIGN, 200), 0);
	CHECK_EQ(run_one(ed, KW_OP_ED25519_SIGN, 7), 0);
	check_decrypt();

	/* Errors: wrong length, wrong key type, not a key opcode, no key. */
	CHECK_EQ(run_one(rsa, KW_OP_RSA_SIGN_SHA256, 31), -KW_ECRYPTO);
	CHECK_EQ(run_one(p256, KW_OP_RSA_SIGN_SHA256, 32), -KW_ECRYPTO);
	CHECK_EQ(run_one(rsa, KW_OP_ECDSA_SIGN_SHA256, 32), -KW_ECRYPTO);
	CHECK_EQ(run_one(ed, KW_OP_RSA_PSS_SIGN_SHA256, 32), -KW_ECRYPTO);
	CHECK_EQ(run_one(rsa, KW_OP_PING, 0), -EINVAL);
	CHECK_EQ(run_one(NULL, KW_OP_RSA_SIGN_SHA256, 32), -EINVAL);
	CHECK(ERR_peek_error() == 0);
	/* A good op after failures still works (the cached context survived). */
	CHECK_EQ(run_one(rsa, KW_OP_RSA_SIGN_SHA256, 32), 0);

	/* More keys than the cache holds, each freed by the test: entries keep them alive. */
	for (int round = 0; round < 2; round++) {
		EVP_PKEY *many[12];
		for (int i = 0; i < 12; i++) {
			many[i] = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
			CHECK_EQ(run_one(many[i], KW_OP_ECDSA_SIGN_SHA256, 32), 0);
		}
		for (int i = 0; i < 12; i++) {
			CHECK_EQ(run_one(many[i], KW_OP_ECDSA_SIGN_SHA384, 48), 0);
			EVP_PKEY_free(many[i]);
		}
	}

	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, thread_main, NULL);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);

	kw_op_compute_thread_cleanup();
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(ed);
	CHECK_DONE();
}
