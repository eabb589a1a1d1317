/*
 * test_exec.c - every key operation on its key type, each result verified
 * with the public key by OpenSSL; every error row of the answer table; the
 * per-executor context cache across keystore changes and threads.
 */
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keygen.h"
#include "keystore.h"
#include "keyway/keyid.h"
#include "exec.h"

enum { K_RSA2048, K_RSA3072, K_P256, K_P384, K_P521, K_ED25519, NKEYS };
static const char *key_files[NKEYS] = {"rsa2048.key", "sub/rsa3072.key", "p256.key",
                                       "p384.key",    "sub/p521.key",    "ed25519.key"};
static const enum key_format key_formats[NKEYS] = {FMT_DER,      FMT_TRAD_PEM, FMT_PKCS8_PEM,
                                                   FMT_TRAD_PEM, FMT_DER,      FMT_DER};
static EVP_PKEY *keys[NKEYS];
static uint8_t skis[NKEYS][KW_SKI_LEN];

static struct kw_msg req(uint8_t op, const uint8_t *ski, const uint8_t *digest,
                         const uint8_t *payload, size_t len)
{
	struct kw_msg m = {.has_opcode = true, .opcode = op};
	if (ski != NULL) {
		m.has_ski = true;
		memcpy(m.ski, ski, KW_SKI_LEN);
	}
	if (digest != NULL) {
		m.has_digest = true;
		memcpy(m.digest, digest, KW_DIGEST_LEN);
	}
	m.payload.data = payload;
	m.payload.len = len;
	return m;
}

/* expect_error runs m and checks it is answered with error e. */
static void expect_error(struct kwd_exec *s, const struct kwd_keystore *ks, const struct kw_msg *m,
                         enum kw_proto_error e, int line)
{
	struct kwd_exec_result r;
	kwd_exec_run(s, ks, m, &r);
	if (r.opcode != KW_OP_ERROR || r.error != e || r.len != 1 || r.payload == NULL ||
	    r.payload[0] != e) {
		fprintf(stderr, "line %d: opcode 0x%02x: got 0x%02x/0x%02x, want error 0x%02x\n",
		        line, m->opcode, r.opcode, r.error, e);
		check_failures++;
	}
	CHECK(ERR_peek_error() == 0);
	kwd_exec_result_cleanse(&r);
}
#define EXPECT_ERROR(s, ks, m, e) expect_error(s, ks, m, e, __LINE__)

static const EVP_MD *md_of(uint8_t op)
{
	switch (op) {
	case KW_OP_RSA_SIGN_MD5SHA1:
	case KW_OP_ECDSA_SIGN_MD5SHA1:
		return EVP_md5_sha1();
	case KW_OP_RSA_SIGN_SHA1:
	case KW_OP_ECDSA_SIGN_SHA1:
		return EVP_sha1();
	case KW_OP_RSA_SIGN_SHA224:
	case KW_OP_ECDSA_SIGN_SHA224:
		return EVP_sha224();
	case KW_OP_RSA_SIGN_SHA256:
	case KW_OP_ECDSA_SIGN_SHA256:
	case KW_OP_RSA_PSS_SIGN_SHA256:
		return EVP_sha256();
	case KW_OP_RSA_SIGN_SHA384:
	case KW_OP_ECDSA_SIGN_SHA384:
	case KW_OP_RSA_PSS_SIGN_SHA384:
		return EVP_sha384();
	default:
		return EVP_sha512();
	}
}

static bool is_pss(uint8_t op)
{
	return op >= KW_OP_RSA_PSS_SIGN_SHA256 && op <= KW_OP_RSA_PSS_SIGN_SHA512;
}

/* verify checks sig over the hash tbs with the public half of key, as op means it. */
static bool verify(EVP_PKEY *key, uint8_t op, const uint8_t *sig, size_t siglen, const uint8_t *tbs,
                   size_t tbslen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1;
	if (ok && EVP_PKEY_is_a(key, "RSA")) {
		ok = EVP_PKEY_CTX_set_signature_md(ctx, md_of(op)) == 1;
		if (ok && is_pss(op))
			ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
			     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md_of(op)) == 1 &&
			     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, EVP_MD_get_size(md_of(op))) == 1;
		else if (ok)
			ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1;
	}
	ok = ok && EVP_PKEY_verify(ctx, sig, siglen, tbs, tbslen) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* sign_and_verify hashes a random message for op, signs by SKI and verifies. */
static void sign_and_verify(struct kwd_exec *s, const struct kwd_keystore *ks, int ki, uint8_t op)
{
	uint8_t msg[100], hash[64];
	unsigned hlen = 0;
	struct kwd_exec_result r;

	RAND_bytes(msg, sizeof(msg));
	CHECK(EVP_Digest(msg, sizeof(msg), hash, &hlen, md_of(op), NULL) == 1);
	struct kw_msg m = req(op, skis[ki], NULL, hash, hlen);
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK_EQ(r.error, KW_ERR_NONE);
	CHECK(r.payload == r.buf);
	if (r.opcode != KW_OP_RESPONSE)
		return;
	if (!verify(keys[ki], op, r.payload, r.len, hash, hlen)) {
		fprintf(stderr, "key %s opcode 0x%02x: signature does not verify\n", key_files[ki],
		        op);
		check_failures++;
	}
	if (EVP_PKEY_is_a(keys[ki], "RSA")) {
		CHECK_EQ(r.len, EVP_PKEY_get_size(keys[ki]));
		/* Cross-check the DigestInfo against a whole-message verification. */
		if (op != KW_OP_RSA_SIGN_MD5SHA1 && !is_pss(op)) {
			EVP_MD_CTX *v = EVP_MD_CTX_new();
			CHECK(EVP_DigestVerifyInit(v, NULL, md_of(op), NULL, keys[ki]) == 1);
			CHECK(EVP_DigestVerify(v, r.payload, r.len, msg, sizeof(msg)) == 1);
			EVP_MD_CTX_free(v);
		}
	} else {
		/* ECDSA: a DER ECDSA-Sig-Value and nothing after it. */
		const unsigned char *p = r.payload;
		ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)r.len);
		CHECK(es != NULL && p == r.payload + r.len);
		ECDSA_SIG_free(es);
	}
	kwd_exec_result_cleanse(&r);
	CHECK(r.payload == NULL && r.len == 0);
}

static const uint8_t rsa_ops[] = {
    KW_OP_RSA_SIGN_MD5SHA1,    KW_OP_RSA_SIGN_SHA1,       KW_OP_RSA_SIGN_SHA224,
    KW_OP_RSA_SIGN_SHA256,     KW_OP_RSA_SIGN_SHA384,     KW_OP_RSA_SIGN_SHA512,
    KW_OP_RSA_PSS_SIGN_SHA256, KW_OP_RSA_PSS_SIGN_SHA384, KW_OP_RSA_PSS_SIGN_SHA512};
static const uint8_t ec_ops[] = {KW_OP_ECDSA_SIGN_MD5SHA1, KW_OP_ECDSA_SIGN_SHA1,
                                 KW_OP_ECDSA_SIGN_SHA224,  KW_OP_ECDSA_SIGN_SHA256,
                                 KW_OP_ECDSA_SIGN_SHA384,  KW_OP_ECDSA_SIGN_SHA512};

static void test_signatures(struct kwd_exec *s, const struct kwd_keystore *ks)
{
	/* Twice each: the second run goes through the cached contexts. */
	for (int rep = 0; rep < 2; rep++) {
		for (int ki = K_RSA2048; ki <= K_RSA3072; ki++)
			for (size_t i = 0; i < sizeof(rsa_ops); i++)
				sign_and_verify(s, ks, ki, rsa_ops[i]);
		for (int ki = K_P256; ki <= K_P521; ki++)
			for (size_t i = 0; i < sizeof(ec_ops); i++)
				sign_and_verify(s, ks, ki, ec_ops[i]);
	}
}

static void ed25519_one(struct kwd_exec *s, const struct kwd_keystore *ks, const uint8_t *msg,
                        size_t len)
{
	struct kwd_exec_result r;
	struct kw_msg m = req(KW_OP_ED25519_SIGN, skis[K_ED25519], NULL, msg, len);
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK_EQ(r.len, 64);
	EVP_MD_CTX *v = EVP_MD_CTX_new();
	CHECK(EVP_DigestVerifyInit(v, NULL, NULL, NULL, keys[K_ED25519]) == 1);
	CHECK(EVP_DigestVerify(v, r.payload, r.len, msg != NULL ? msg : (const uint8_t *)"", len) ==
	      1);
	EVP_MD_CTX_free(v);
	kwd_exec_result_cleanse(&r);
}

static void test_ed25519(struct kwd_exec *s, const struct kwd_keystore *ks)
{
	static uint8_t msg[2000];
	RAND_bytes(msg, sizeof(msg));
	ed25519_one(s, ks, NULL, 0); /* no payload item: the empty message */
	ed25519_one(s, ks, msg, 0);
	ed25519_one(s, ks, msg, 1);
	ed25519_one(s, ks, msg, 32);
	ed25519_one(s, ks, msg, 100);
	ed25519_one(s, ks, msg, sizeof(msg));
	ed25519_one(s, ks, msg, 32);
}

static void decrypt_one(struct kwd_exec *s, const struct kwd_keystore *ks, int ki)
{
	EVP_PKEY *key = keys[ki];
	size_t k = (size_t)EVP_PKEY_get_size(key), clen = k;
	uint8_t secret[48], ct[512], block[512];
	struct kwd_exec_result r;

	RAND_bytes(secret, sizeof(secret));
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new(key, NULL);
	CHECK(EVP_PKEY_encrypt_init(ctx) == 1);
	CHECK(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1);
	CHECK(EVP_PKEY_encrypt(ctx, ct, &clen, secret, sizeof(secret)) == 1);
	CHECK_EQ(clen, k);

	struct kw_msg m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k);
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK_EQ(r.len, k);
	if (r.len == k) {
		CHECK(r.payload[0] == 0x00 && r.payload[1] == 0x02);
		CHECK(r.payload[k - sizeof(secret) - 1] == 0x00);
		CHECK(memcmp(r.payload + k - sizeof(secret), secret, sizeof(secret)) == 0);
	}
	kwd_exec_result_cleanse(&r);

	/* A raw block with leading zero bytes comes back left-padded to k bytes. */
	memset(block, 0, k);
	RAND_bytes(block + 5, (int)(k - 5));
	clen = k;
	CHECK(EVP_PKEY_encrypt_init(ctx) == 1);
	CHECK(EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1);
	CHECK(EVP_PKEY_encrypt(ctx, ct, &clen, block, k) == 1);
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k);
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK(r.len == k && memcmp(r.payload, block, k) == 0);
	kwd_exec_result_cleanse(&r);

	/*
	 * A ciphertext shorter than k bytes is the same integer left-padded:
	 * check r^e mod n == c with the public key.
	 */
	const size_t short_lens[] = {k - 1, 20, 1, 0};
	for (size_t i = 0; i < 4; i++) {
		size_t short_len = short_lens[i];
		uint8_t c[512] = {0}, back[512];
		RAND_bytes(c + (k - short_len), (int)short_len);
		m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, c + (k - short_len), short_len);
		kwd_exec_run(s, ks, &m, &r);
		CHECK_EQ(r.opcode, KW_OP_RESPONSE);
		CHECK_EQ(r.len, k);
		if (r.len == k) {
			size_t blen = k;
			CHECK(EVP_PKEY_encrypt(ctx, back, &blen, r.payload, k) == 1);
			CHECK(blen == k && memcmp(back, c, k) == 0);
		}
		kwd_exec_result_cleanse(&r);
	}
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, NULL, 0); /* no payload: c = 0 */
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK(r.len == k && r.payload[0] == 0 && memcmp(r.payload, r.payload + 1, k - 1) == 0);
	kwd_exec_result_cleanse(&r);
	EVP_PKEY_CTX_free(ctx);

	/* Longer than k bytes, or not below the modulus: crypto error. */
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k + 1);
	EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
	memset(ct, 0xff, k);
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k);
	EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
	BIGNUM *n = NULL;
	CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
	CHECK(BN_bn2binpad(n, ct, (int)k) == (int)k);
	BN_free(n);
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k); /* c == n */
	EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
	m = req(KW_OP_RSA_DECRYPT, skis[ki], NULL, ct, k - 1); /* n without its last byte < n */
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	kwd_exec_result_cleanse(&r);
	/* And the cached context still works after a failure. */
	sign_and_verify(s, ks, ki, KW_OP_RSA_SIGN_SHA256);
}

static void test_ping(struct kwd_exec *s, const struct kwd_keystore *ks)
{
	static const uint8_t hello[] = "hello";
	struct kwd_exec_result r;
	struct kw_msg m = req(KW_OP_PING, NULL, NULL, hello, 5);

	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_PONG);
	CHECK_EQ(r.error, KW_ERR_NONE);
	CHECK(r.payload == hello && r.len == 5);
	kwd_exec_result_cleanse(&r);

	m = req(KW_OP_PING, NULL, NULL, NULL, 0); /* no payload item */
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_PONG);
	CHECK_EQ(r.len, 0);
	kwd_exec_result_cleanse(&r);

	m = req(KW_OP_PING, skis[K_P256], NULL, hello, 0); /* empty payload item; SKI ignored */
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_PONG);
	CHECK_EQ(r.len, 0);
	kwd_exec_result_cleanse(&r);
}

static uint8_t expected_error(uint8_t op)
{
	switch (op) {
	case KW_OP_RESPONSE:
	case KW_OP_PONG:
	case KW_OP_ERROR:
		return KW_ERR_UNEXPECTED_OPCODE;
	}
	if ((op >= 0x01 && op <= 0x07) || (op >= 0x12 && op <= 0x18) || (op >= 0x35 && op <= 0x37))
		return KW_ERR_INTERNAL; /* a key operation with no SKI */
	return KW_ERR_BAD_OPCODE;
}

static void test_errors(struct kwd_exec *s, const struct kwd_keystore *ks)
{
	uint8_t h32[32] = {1}, zero_ski[KW_SKI_LEN] = {0}, other[KW_DIGEST_LEN],
	        digest[KW_DIGEST_LEN];
	struct kw_msg m;

	memset(other, 0x5a, sizeof(other));
	CHECK(kw_key_digest(keys[K_RSA2048], digest) == 0);

	/* Every opcode without SKI: the opcode class decides before any key lookup. */
	for (int op = 0; op < 256; op++) {
		if (op == KW_OP_PING)
			continue;
		m = req((uint8_t)op, NULL, NULL, h32, sizeof(h32));
		EXPECT_ERROR(s, ks, &m, expected_error((uint8_t)op));
	}
	/* The table's explicit rows, with a valid SKI where one could matter. */
	static const uint8_t bad[] = {0x08, 0x20, 0x21, 0x22, 0x23, 0x24, 0xF3, 0x00,
	                              0x09, 0x11, 0x19, 0x34, 0x38, 0x77, 0xF4, 0xFE};
	for (size_t i = 0; i < sizeof(bad); i++) {
		m = req(bad[i], skis[K_RSA2048], NULL, h32, sizeof(h32));
		EXPECT_ERROR(s, ks, &m, KW_ERR_BAD_OPCODE);
	}
	static const uint8_t unexpected[] = {KW_OP_RESPONSE, KW_OP_PONG, KW_OP_ERROR};
	for (size_t i = 0; i < sizeof(unexpected); i++) {
		m = req(unexpected[i], skis[K_RSA2048], NULL, h32, sizeof(h32));
		EXPECT_ERROR(s, ks, &m, KW_ERR_UNEXPECTED_OPCODE);
	}
	m = req(KW_OP_RSA_SIGN_SHA256, skis[K_RSA2048], NULL, h32, sizeof(h32));
	m.has_opcode = false;
	EXPECT_ERROR(s, ks, &m, KW_ERR_BAD_OPCODE);

	/*
	 * Key lookup: an all-zero SKI or digest is none; an unknown one is "not
	 * found", which wins over a family mismatch (lookup comes first). Then
	 * the family mismatches.
	 */
	uint8_t zero_digest[KW_DIGEST_LEN] = {0};
	const struct {
		uint8_t op;
		const uint8_t *ski, *digest;
		enum kw_proto_error e;
	} rows[] = {
	    {KW_OP_RSA_SIGN_SHA256, zero_ski, NULL, KW_ERR_INTERNAL},
	    {KW_OP_RSA_SIGN_SHA256, other, NULL, KW_ERR_KEY_NOT_FOUND},
	    {KW_OP_RSA_SIGN_SHA256, NULL, other, KW_ERR_KEY_NOT_FOUND},
	    {KW_OP_RSA_SIGN_SHA256, zero_ski, other, KW_ERR_KEY_NOT_FOUND},
	    {KW_OP_RSA_SIGN_SHA256, NULL, zero_digest, KW_ERR_INTERNAL},
	    {KW_OP_RSA_SIGN_SHA256, zero_ski, zero_digest, KW_ERR_INTERNAL},
	    {KW_OP_ECDSA_SIGN_SHA256, other, NULL, KW_ERR_KEY_NOT_FOUND},
	    {KW_OP_RSA_SIGN_SHA256, skis[K_P256], NULL, KW_ERR_CRYPTO},
	    {KW_OP_RSA_PSS_SIGN_SHA256, skis[K_ED25519], NULL, KW_ERR_CRYPTO},
	    {KW_OP_ECDSA_SIGN_SHA256, skis[K_RSA2048], NULL, KW_ERR_CRYPTO},
	    {KW_OP_ECDSA_SIGN_SHA256, skis[K_ED25519], NULL, KW_ERR_CRYPTO},
	    {KW_OP_ED25519_SIGN, skis[K_RSA2048], NULL, KW_ERR_CRYPTO},
	    {KW_OP_ED25519_SIGN, skis[K_P256], NULL, KW_ERR_CRYPTO},
	    {KW_OP_RSA_DECRYPT, skis[K_P384], NULL, KW_ERR_CRYPTO},
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		m = req(rows[i].op, rows[i].ski, rows[i].digest, h32, sizeof(h32));
		EXPECT_ERROR(s, ks, &m, rows[i].e);
	}

	/* A digest only names RSA keys; EC keys have none. */
	uint8_t ec_digest[KW_DIGEST_LEN];
	CHECK(kw_key_digest(keys[K_P256], ec_digest) != 0);

	/* Payload length differs from the hash's. */
	for (size_t i = 0; i < sizeof(rsa_ops); i++) {
		size_t want = (size_t)EVP_MD_get_size(md_of(rsa_ops[i]));
		uint8_t buf[80] = {0};
		m = req(rsa_ops[i], skis[K_RSA2048], NULL, buf, want - 1);
		EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
		m = req(rsa_ops[i], skis[K_RSA2048], NULL, buf, want + 1);
		EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
		m = req(rsa_ops[i], skis[K_RSA2048], NULL, NULL, 0);
		EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
	}
	for (size_t i = 0; i < sizeof(ec_ops); i++) {
		size_t want = (size_t)EVP_MD_get_size(md_of(ec_ops[i]));
		uint8_t buf[80] = {0};
		m = req(ec_ops[i], skis[K_P384], NULL, buf, want + 1);
		EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
		m = req(ec_ops[i], skis[K_P384], NULL, buf, 0);
		EXPECT_ERROR(s, ks, &m, KW_ERR_CRYPTO);
	}

	/* Digest lookup when the SKI is absent or zero; SKI wins when both are present. */
	uint8_t hash[32];
	struct kwd_exec_result r;
	RAND_bytes(hash, sizeof(hash));
	const uint8_t *ski_choices[] = {NULL, zero_ski};
	for (int i = 0; i < 2; i++) {
		m = req(KW_OP_RSA_SIGN_SHA256, ski_choices[i], digest, hash, sizeof(hash));
		kwd_exec_run(s, ks, &m, &r);
		CHECK_EQ(r.opcode, KW_OP_RESPONSE);
		CHECK(verify(keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256, r.payload, r.len, hash, 32));
		kwd_exec_result_cleanse(&r);
	}
	m = req(KW_OP_RSA_SIGN_SHA256, skis[K_RSA3072], digest, hash, sizeof(hash));
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK(verify(keys[K_RSA3072], KW_OP_RSA_SIGN_SHA256, r.payload, r.len, hash, 32));
	kwd_exec_result_cleanse(&r);
	/* A valid-looking SKI naming no key is not rescued by a good digest. */
	m = req(KW_OP_RSA_SIGN_SHA256, other, digest, hash, sizeof(hash));
	EXPECT_ERROR(s, ks, &m, KW_ERR_KEY_NOT_FOUND);
}

/* make_dir writes keys[i] for each i in which into a fresh directory. */
static char *make_dir(EVP_PKEY *const *which, int n)
{
	char *dir = make_tmpdir();
	CHECK(dir != NULL);
	CHECK(mkdir(join(dir, "sub"), 0700) == 0);
	for (int i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "k%d.key", i);
		CHECK(write_key(join(dir, name), which[i], i % 2 ? FMT_DER : FMT_PKCS8_PEM, 0600) ==
		      0);
	}
	return dir;
}

static void sign_with(struct kwd_exec *s, const struct kwd_keystore *ks, EVP_PKEY *key, uint8_t op)
{
	uint8_t ski[KW_SKI_LEN], hash[48];
	size_t hlen = (size_t)EVP_MD_get_size(md_of(op));
	struct kwd_exec_result r;

	CHECK(kw_key_ski(key, ski) == 0);
	RAND_bytes(hash, (int)hlen);
	struct kw_msg m = req(op, ski, NULL, hash, hlen);
	kwd_exec_run(s, ks, &m, &r);
	CHECK_EQ(r.opcode, KW_OP_RESPONSE);
	CHECK(r.opcode == KW_OP_RESPONSE && verify(key, op, r.payload, r.len, hash, hlen));
	kwd_exec_result_cleanse(&r);
}

static void test_cache_invalidation(void)
{
	EVP_PKEY *x = gen_rsa(2048), *y = gen_ec("P-384");
	EVP_PKEY *set1[] = {keys[K_RSA2048], keys[K_P256]}, *set2[] = {x, y},
	         *set3[] = {keys[K_P256], keys[K_RSA2048]};
	char *d1 = make_dir(set1, 2), *d2 = make_dir(set2, 2), *d3 = make_dir(set3, 2);
	struct kwd_keystore *ks1 = NULL, *ks2 = NULL, *ks3 = NULL;
	struct kwd_exec *s = NULL;
	char err[256];

	CHECK(kwd_exec_new(&s) == 0);
	CHECK(kwd_keystore_load(d1, NULL, &ks1, err, sizeof(err)) == 0);
	CHECK(kwd_keystore_load(d2, NULL, &ks2, err, sizeof(err)) == 0);
	/* Same key at the same index in both, different key material. */
	sign_with(s, ks1, keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256);
	sign_with(s, ks1, keys[K_P256], KW_OP_ECDSA_SIGN_SHA256);
	sign_with(s, ks2, x, KW_OP_RSA_SIGN_SHA256);
	sign_with(s, ks2, y, KW_OP_ECDSA_SIGN_SHA384);
	sign_with(s, ks1, keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256);
	sign_with(s, ks2, x, KW_OP_RSA_SIGN_SHA256);
	/* The keystore the cache was built for goes away; its memory may be reused. */
	kwd_keystore_free(ks2);
	CHECK(kwd_keystore_load(d3, NULL, &ks3, err, sizeof(err)) == 0);
	sign_with(s, ks3, keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256);
	sign_with(s, ks3, keys[K_P256], KW_OP_ECDSA_SIGN_SHA256);
	kwd_keystore_free(ks1);
	sign_with(s, ks3, keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256);
	kwd_exec_reset(s);
	sign_with(s, ks3, keys[K_RSA2048], KW_OP_RSA_SIGN_SHA256);
	/* The executor outlives the keystore its cache holds. */
	kwd_keystore_free(ks3);
	kwd_exec_free(s);
	kwd_exec_free(NULL);
	EVP_PKEY_free(x);
	EVP_PKEY_free(y);
	rm_tree(d1);
	rm_tree(d2);
	rm_tree(d3);
}

struct thread_arg {
	const struct kwd_keystore *ks;
	int failures;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	struct kwd_exec *s = NULL;
	if (kwd_exec_new(&s) != 0) {
		a->failures++;
		return NULL;
	}
	for (int i = 0; i < 40; i++) {
		uint8_t op = i % 2 ? KW_OP_RSA_SIGN_SHA256 : KW_OP_ECDSA_SIGN_SHA256;
		int ki = i % 2 ? K_RSA2048 : K_P256;
		uint8_t hash[32];
		struct kwd_exec_result r;
		RAND_bytes(hash, sizeof(hash));
		struct kw_msg m = req(op, skis[ki], NULL, hash, sizeof(hash));
		kwd_exec_run(s, a->ks, &m, &r);
		if (r.opcode != KW_OP_RESPONSE || !verify(keys[ki], op, r.payload, r.len, hash, 32))
			a->failures++;
		kwd_exec_result_cleanse(&r);
	}
	kwd_exec_free(s);
	return NULL;
}

static void test_threads(const struct kwd_keystore *ks)
{
	pthread_t t[4];
	struct thread_arg a[4];
	for (int i = 0; i < 4; i++) {
		a[i] = (struct thread_arg){.ks = ks};
		CHECK(pthread_create(&t[i], NULL, thread_main, &a[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		CHECK_EQ(a[i].failures, 0);
	}
}

int main(void)
{
	struct kwd_keystore *ks = NULL;
	struct kwd_exec *s = NULL;
	char err[512];
	char *dir = make_tmpdir();

	keys[K_RSA2048] = gen_rsa(2048);
	keys[K_RSA3072] = gen_rsa(3072);
	keys[K_P256] = gen_ec("P-256");
	keys[K_P384] = gen_ec("P-384");
	keys[K_P521] = gen_ec("P-521");
	keys[K_ED25519] = gen_named("ED25519");
	CHECK(dir != NULL && mkdir(join(dir, "sub"), 0700) == 0);
	for (int i = 0; i < NKEYS; i++) {
		CHECK(keys[i] != NULL);
		CHECK(kw_key_ski(keys[i], skis[i]) == 0);
		CHECK(write_key(join(dir, key_files[i]), keys[i], key_formats[i], 0600) == 0);
	}
	CHECK(write_key(join(dir, "sub/ed25519.key"), keys[K_ED25519], FMT_PKCS8_PEM, 0600) == 0);
	/* ...that is the same key twice: refused; keep one. */
	CHECK(kwd_keystore_load(dir, NULL, &ks, err, sizeof(err)) != 0);
	CHECK(unlink(join(dir, "sub/ed25519.key")) == 0);
	int rc = kwd_keystore_load(dir, NULL, &ks, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "load: %s\n", err);
	CHECK(rc == 0 && kwd_keystore_count(ks) == NKEYS);
	CHECK(kwd_exec_new(&s) == 0);
	if (ks == NULL || s == NULL)
		CHECK_DONE();

	test_ping(s, ks);
	test_signatures(s, ks);
	test_ed25519(s, ks);
	decrypt_one(s, ks, K_RSA2048);
	decrypt_one(s, ks, K_RSA3072);
	test_errors(s, ks);
	test_signatures(s, ks); /* contexts survive all those errors */
	test_cache_invalidation();
	test_threads(ks);

	kwd_exec_free(s);
	kwd_keystore_free(ks);
	for (int i = 0; i < NKEYS; i++)
		EVP_PKEY_free(keys[i]);
	rm_tree(dir);
	CHECK(ERR_peek_error() == 0);
	CHECK_DONE();
}
