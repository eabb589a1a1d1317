/* test_keyid.c - SKI and modulus digest as gokeyless computes them; key loading; hex. */
#include <ctype.h>
#include <errno.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keywayd/keygen.h"

/*
 * The SKI recomputed from the key's own encoding, not from its
 * SubjectPublicKeyInfo: the BIT STRING holds RSAPublicKey DER for RSA, the
 * uncompressed point for EC and the raw 32 bytes for Ed25519.
 */
static void ref_ski(EVP_PKEY *k, uint8_t out[KW_SKI_LEN])
{
	unsigned char buf[1024], *der = NULL;
	size_t len = sizeof(buf);

	if (EVP_PKEY_is_a(k, "RSA")) {
		int n = i2d_PublicKey(k, &der);
		CHECK(n > 0);
		SHA1(der, n > 0 ? (size_t)n : 0, out);
		OPENSSL_free(der);
		return;
	}
	if (EVP_PKEY_is_a(k, "EC"))
		CHECK(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, buf,
		                                      sizeof(buf), &len) == 1);
	else
		CHECK(EVP_PKEY_get_raw_public_key(k, buf, &len) == 1);
	SHA1(buf, len, out);
}

static void test_ski(EVP_PKEY *k)
{
	uint8_t got[KW_SKI_LEN], want[KW_SKI_LEN];
	CHECK_EQ(kw_key_ski(k, got), 0);
	ref_ski(k, want);
	CHECK(memcmp(got, want, KW_SKI_LEN) == 0);
}

/* The modulus digest: SHA-256 of the upper-case hex of n, without leading zeros. */
static void test_digest(void)
{
	EVP_PKEY *k = gen_rsa(1024);
	BIGNUM *n = NULL;
	uint8_t got[KW_DIGEST_LEN], want[KW_DIGEST_LEN];
	char hex[1024 / 4 + 1];
	unsigned char bin[128];

	CHECK(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n) == 1);
	CHECK_EQ(BN_bn2bin(n, bin), 128);
	for (int i = 0; i < 128; i++)
		snprintf(hex + 2 * i, 3, "%02X", bin[i]);
	/* A 1024-bit modulus has its top bit set: no leading zero to strip. */
	CHECK(hex[0] != '0');
	SHA256((const unsigned char *)hex, strlen(hex), want);
	CHECK_EQ(kw_key_digest(k, got), 0);
	CHECK(memcmp(got, want, KW_DIGEST_LEN) == 0);
	/* Lower-case hex would give another digest: the case matters. */
	for (char *h = hex; *h; h++)
		*h = (char)tolower((unsigned char)*h);
	SHA256((const unsigned char *)hex, strlen(hex), want);
	CHECK(memcmp(got, want, KW_DIGEST_LEN) != 0);
	BN_free(n);
	EVP_PKEY_free(k);

	EVP_PKEY *ec = gen_ec("P-256");
	CHECK_EQ(kw_key_digest(ec, got), -EINVAL);
	EVP_PKEY_free(ec);
}

/* Every file form gives the same public key, and a private key comes back public only. */
static void test_load(void)
{
	char *dir = make_tmpdir();
	EVP_PKEY *k = gen_ec("P-256"), *got = NULL;
	uint8_t want[KW_SKI_LEN], ski[KW_SKI_LEN];
	static const enum key_format fmts[] = {FMT_PKCS8_PEM, FMT_TRAD_PEM, FMT_DER,
	                                       FMT_PUBKEY_PEM};

	CHECK(dir != NULL);
	CHECK_EQ(kw_key_ski(k, want), 0);
	for (size_t i = 0; i < sizeof(fmts) / sizeof(fmts[0]); i++) {
		CHECK_EQ(write_key(join(dir, "k"), k, fmts[i], 0600), 0);
		CHECK_EQ(kw_load_public_key(join(dir, "k"), &got), 0);
		CHECK(got != NULL && kw_key_ski(got, ski) == 0 &&
		      memcmp(ski, want, KW_SKI_LEN) == 0);
		BIGNUM *priv = NULL;
		CHECK(got != NULL &&
		      EVP_PKEY_get_bn_param(got, OSSL_PKEY_PARAM_PRIV_KEY, &priv) != 1);
		BN_free(priv);
		EVP_PKEY_free(got);
	}
	CHECK_EQ(write_text(join(dir, "junk"), "not a key\n", 0600), 0);
	CHECK_EQ(kw_load_public_key(join(dir, "junk"), &got), -KW_ECRYPTO);
	CHECK(got == NULL);
	CHECK_EQ(kw_load_public_key(join(dir, "missing"), &got), -ENOENT);
	EVP_PKEY_free(k);
	rm_tree(dir);
}

static void test_hex(void)
{
	static const uint8_t bytes[] = {0x00, 0x0f, 0xa5, 0xff};
	uint8_t back[4];
	char s[9];

	kw_hex(s, bytes, 4);
	CHECK(strcmp(s, "000fa5ff") == 0);
	CHECK_EQ(kw_unhex(back, 4, "000FA5ff"), 0);
	CHECK(memcmp(back, bytes, 4) == 0);
	CHECK_EQ(kw_unhex(back, 4, "000fa5f"), -EINVAL);
	CHECK_EQ(kw_unhex(back, 4, "000fa5fg"), -EINVAL);
	CHECK_EQ(kw_unhex(back, 4, "000fa5ff00"), -EINVAL);
}

int main(void)
{
	EVP_PKEY *rsa = gen_rsa(1024), *ec = gen_ec("P-384"), *ed = gen_named("ED25519");
	test_ski(rsa);
	test_ski(ec);
	test_ski(ed);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	test_digest();
	test_load();
	test_hex();
	CHECK_DONE();
}
