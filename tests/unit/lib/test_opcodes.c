/* test_opcodes.c - what each keyless opcode computes: padding, digest and salt, per opcode. */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/opcodes.h"
#include "keyway/protocol.h"
#include "keywayd/keygen.h"

/* The table as the keyless protocol defines it. */
static const struct {
	uint8_t op;
	int key_type, alg;
	size_t hash_len;
	const char *md;
} want[] = {
    {KW_OP_RSA_DECRYPT, KW_KEY_RSA, KW_ALG_RSA_DECRYPT, 0, NULL},
    {KW_OP_RSA_SIGN_MD5SHA1, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 36, "MD5-SHA1"},
    {KW_OP_RSA_SIGN_SHA1, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 20, "SHA1"},
    {KW_OP_RSA_SIGN_SHA224, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 28, "SHA224"},
    {KW_OP_RSA_SIGN_SHA256, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 32, "SHA256"},
    {KW_OP_RSA_SIGN_SHA384, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 48, "SHA384"},
    {KW_OP_RSA_SIGN_SHA512, KW_KEY_RSA, KW_ALG_RSA_PKCS1, 64, "SHA512"},
    {KW_OP_RSA_PSS_SIGN_SHA256, KW_KEY_RSA, KW_ALG_RSA_PSS, 32, "SHA256"},
    {KW_OP_RSA_PSS_SIGN_SHA384, KW_KEY_RSA, KW_ALG_RSA_PSS, 48, "SHA384"},
    {KW_OP_RSA_PSS_SIGN_SHA512, KW_KEY_RSA, KW_ALG_RSA_PSS, 64, "SHA512"},
    {KW_OP_ECDSA_SIGN_MD5SHA1, KW_KEY_EC, KW_ALG_ECDSA, 36, NULL},
    {KW_OP_ECDSA_SIGN_SHA1, KW_KEY_EC, KW_ALG_ECDSA, 20, NULL},
    {KW_OP_ECDSA_SIGN_SHA224, KW_KEY_EC, KW_ALG_ECDSA, 28, NULL},
    {KW_OP_ECDSA_SIGN_SHA256, KW_KEY_EC, KW_ALG_ECDSA, 32, NULL},
    {KW_OP_ECDSA_SIGN_SHA384, KW_KEY_EC, KW_ALG_ECDSA, 48, NULL},
    {KW_OP_ECDSA_SIGN_SHA512, KW_KEY_EC, KW_ALG_ECDSA, 64, NULL},
    {KW_OP_ED25519_SIGN, KW_KEY_ED25519, KW_ALG_ED25519, 0, NULL},
};
#define NWANT (sizeof(want) / sizeof(want[0]))

static EVP_PKEY *rsa, *ec, *ed;

static void test_table(void)
{
	size_t found = 0;
	for (unsigned op = 0; op < 256; op++) {
		const struct kw_opcode_desc *d = kw_opcode_desc((uint8_t)op);
		size_t i = 0;
		while (i < NWANT && want[i].op != op)
			i++;
		if (i == NWANT) {
			CHECK(d == NULL); /* not a key operation: ping, seal, raw decrypt... */
			continue;
		}
		found++;
		CHECK(d != NULL);
		if (d == NULL)
			continue;
		CHECK_EQ(d->key_type, want[i].key_type);
		CHECK_EQ(d->alg, want[i].alg);
		CHECK_EQ(d->hash_len, want[i].hash_len);
		CHECK(d->slot < KW_OPCODE_SLOTS);
		CHECK(want[i].md ? d->md && strcmp(d->md, want[i].md) == 0 : d->md == NULL);
		/* The input length and the key type are checked. */
		if (want[i].hash_len != 0) {
			CHECK(kw_opcode_check(d, want[i].key_type, want[i].hash_len));
			CHECK(!kw_opcode_check(d, want[i].key_type, want[i].hash_len - 1));
			CHECK(!kw_opcode_check(d, want[i].key_type, want[i].hash_len + 1));
		}
		CHECK(!kw_opcode_check(d, want[i].key_type == KW_KEY_RSA ? KW_KEY_EC : KW_KEY_RSA,
		                       want[i].hash_len));
	}
	CHECK_EQ(found, NWANT);
	CHECK(!kw_opcode_check(NULL, KW_KEY_RSA, 32));
	/* RSA opcodes have a slot each; every ECDSA one shares one. */
	for (size_t i = 0; i < NWANT; i++)
		for (size_t j = i + 1; j < NWANT; j++)
			if (want[i].key_type == KW_KEY_RSA && want[j].key_type == KW_KEY_RSA)
				CHECK(kw_opcode_desc(want[i].op)->slot !=
				      kw_opcode_desc(want[j].op)->slot);
	CHECK_EQ(kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA1)->slot,
	         kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA512)->slot);
}

/* verify checks sig over in with the public key, set up independently of opcodes.c. */
static int verify(EVP_PKEY *k, size_t i, const uint8_t *sig, size_t siglen, const uint8_t *in)
{
	EVP_PKEY_CTX *v = EVP_PKEY_CTX_new_from_pkey(NULL, k, NULL);
	int ok = v != NULL && EVP_PKEY_verify_init(v) == 1;
	if (ok && want[i].alg != KW_ALG_ECDSA) {
		const EVP_MD *md = EVP_get_digestbyname(want[i].md);
		ok = EVP_PKEY_CTX_set_signature_md(v, md) == 1;
		if (ok && want[i].alg == KW_ALG_RSA_PSS)
			ok = EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PSS_PADDING) == 1 &&
			     EVP_PKEY_CTX_set_rsa_mgf1_md(v, md) == 1 &&
			     EVP_PKEY_CTX_set_rsa_pss_saltlen(v, (int)want[i].hash_len) == 1;
		else if (ok)
			ok = EVP_PKEY_CTX_set_rsa_padding(v, RSA_PKCS1_PADDING) == 1;
	}
	ok = ok && EVP_PKEY_verify(v, sig, siglen, in, want[i].hash_len) == 1;
	EVP_PKEY_CTX_free(v);
	return ok;
}

/* Every signing opcode makes a signature the public key verifies with the protocol's settings. */
static void test_sign(void)
{
	uint8_t in[64], sig[512];
	for (size_t j = 0; j < sizeof(in); j++)
		in[j] = (uint8_t)(j * 7 + 1);
	for (size_t i = 0; i < NWANT; i++) {
		const struct kw_opcode_desc *d = kw_opcode_desc(want[i].op);
		EVP_PKEY *k = want[i].key_type == KW_KEY_RSA ? rsa : ec;
		if (want[i].alg == KW_ALG_RSA_DECRYPT || want[i].alg == KW_ALG_ED25519)
			continue;
		EVP_PKEY_CTX *ctx = kw_opcode_pctx_new(k, d);
		size_t len = 0;
		CHECK(ctx != NULL);
		if (ctx == NULL)
			continue;
		/* Twice: a context is initialised once and used many times. */
		for (int round = 0; round < 2; round++) {
			CHECK_EQ(kw_opcode_pctx_run(ctx, d, k, sig, sizeof(sig), &len, in,
			                            want[i].hash_len),
			         0);
			if (!verify(k, i, sig, len, in))
				fprintf(stderr, "opcode 0x%02x: signature does not verify\n",
				        want[i].op);
			CHECK(verify(k, i, sig, len, in));
		}
		/* Too small an output buffer is an error, not an overflow. */
		CHECK_EQ(kw_opcode_pctx_run(ctx, d, k, sig, 8, &len, in, want[i].hash_len),
		         -KW_ECRYPTO);
		EVP_PKEY_CTX_free(ctx);
	}
}

/* RSA decrypt is the raw c^d mod n, left-padded to the modulus size. */
static void test_decrypt(void)
{
	const struct kw_opcode_desc *d = kw_opcode_desc(KW_OP_RSA_DECRYPT);
	size_t k = (size_t)EVP_PKEY_get_size(rsa), clen = k, len = 0;
	uint8_t m[512] = {0}, c[512], out[512];
	EVP_PKEY_CTX *enc = EVP_PKEY_CTX_new_from_pkey(NULL, rsa, NULL);
	EVP_PKEY_CTX *ctx = kw_opcode_pctx_new(rsa, d);

	/* A message with two leading zero bytes: the output keeps them. */
	for (size_t i = 2; i < k; i++)
		m[i] = (uint8_t)(i + 3);
	CHECK(enc != NULL && EVP_PKEY_encrypt_init(enc) == 1 &&
	      EVP_PKEY_CTX_set_rsa_padding(enc, RSA_NO_PADDING) == 1 &&
	      EVP_PKEY_encrypt(enc, c, &clen, m, k) == 1 && clen == k);
	CHECK(ctx != NULL);
	CHECK_EQ(kw_opcode_pctx_run(ctx, d, rsa, out, sizeof(out), &len, c, k), 0);
	CHECK_EQ(len, k);
	CHECK(memcmp(out, m, k) == 0);
	/* Longer than the modulus, or no room for k bytes: refused. */
	CHECK_EQ(kw_opcode_pctx_run(ctx, d, rsa, out, sizeof(out), &len, c, k + 1), -KW_ECRYPTO);
	CHECK_EQ(kw_opcode_pctx_run(ctx, d, rsa, out, k - 1, &len, c, k), -KW_ECRYPTO);
	EVP_PKEY_CTX_free(ctx);
	EVP_PKEY_CTX_free(enc);
}

/* Ed25519 signs the whole message, any length, with a reused context. */
static void test_ed25519(void)
{
	struct kw_ed25519_signer s = {0};
	const uint8_t msg[] = "a message of any length, not a digest";
	uint8_t sig[64];
	size_t len = 0;

	CHECK(kw_opcode_pctx_new(ed, kw_opcode_desc(KW_OP_ED25519_SIGN)) == NULL);
	for (size_t n = 0; n < sizeof(msg); n += sizeof(msg) / 2) {
		CHECK_EQ(kw_ed25519_sign(&s, ed, sig, sizeof(sig), &len, n ? msg : NULL, n), 0);
		CHECK_EQ(len, 64);
		EVP_MD_CTX *v = EVP_MD_CTX_new();
		CHECK(EVP_DigestVerifyInit(v, NULL, NULL, NULL, ed) == 1 &&
		      EVP_DigestVerify(v, sig, len, msg, n) == 1);
		EVP_MD_CTX_free(v);
	}
	kw_ed25519_signer_cleanup(&s);
	CHECK(s.mctx == NULL);
}

int main(void)
{
	rsa = gen_rsa(2048);
	ec = gen_ec("P-256");
	ed = gen_named("ED25519");
	test_table();
	test_sign();
	test_decrypt();
	test_ed25519();
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	CHECK_DONE();
}
