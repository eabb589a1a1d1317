/*
 * test_pkcs1_depad.c - PKCS#1 v1.5 type 2 depadding outside TLS: the
 * constant-time kwp_pkcs1_type2_depad against a plain reference on random
 * valid and invalid blocks (boundaries included), and implicit rejection
 * (draft-irtf-cfrg-rsa-guidance, as OpenSSL 3.2) against a reference built
 * on EVP_MAC, with real RSA keys.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "tls_depad.h"

/* ref_depad is RFC 8017 7.2.2 step 3 written plainly, with early returns. */
static int ref_depad(uint8_t *out, size_t outsize, const uint8_t *em, size_t k)
{
	if (k < 11 || em[0] != 0 || em[1] != 2)
		return -1;
	size_t i = 2;
	while (i < k && em[i] != 0)
		i++;
	if (i == k || i < 10 || k - i - 1 > outsize)
		return -1;
	memcpy(out, em + i + 1, k - i - 1);
	return (int)(k - i - 1);
}

static uint32_t rnd32(void)
{
	uint32_t v;
	CHECK(RAND_bytes((uint8_t *)&v, sizeof(v)) == 1);
	return v;
}

/* random_block makes a block that is valid, or wrong in one chosen way. */
static void random_block(uint8_t *em, size_t k)
{
	CHECK(RAND_bytes(em, (int)k) == 1);
	for (size_t i = 2; i < k; i++)
		em[i] |= (uint8_t)(em[i] == 0); /* no zero in PS by default */
	em[0] = 0;
	em[1] = 2;
	switch (rnd32() % 8) {
	case 0: /* no separator at all */
		break;
	case 1: /* separator at index 10: the shortest valid PS */
		em[10] = 0;
		break;
	case 2: /* separator at index 9: PS one byte short */
		em[9] = 0;
		break;
	case 3: /* first byte wrong */
		em[0] = (uint8_t)(1 + rnd32() % 255);
		em[2 + rnd32() % (k - 2)] = 0;
		break;
	case 4: /* second byte wrong */
		em[1] = (uint8_t)(rnd32() % 2 ? 1 : 3 + rnd32() % 250);
		em[2 + rnd32() % (k - 2)] = 0;
		break;
	case 5: /* separator as the last byte: empty message */
		em[k - 1] = 0;
		break;
	default: /* separator anywhere, sometimes a second zero after it */
		em[2 + rnd32() % (k - 2)] = 0;
		if (rnd32() % 2)
			em[2 + rnd32() % (k - 2)] = 0;
	}
}

static void test_differential(void)
{
	static const size_t ks[] = {11, 12, 19, 27, 64, 128, 256, 384, 512};
	uint8_t em[512], out[512], ref[512];
	int valid = 0, invalid = 0;

	for (int round = 0; round < 20000; round++) {
		size_t k = ks[rnd32() % (sizeof(ks) / sizeof(ks[0]))];
		size_t outsize = rnd32() % 4 ? k : rnd32() % (k + 1);
		random_block(em, k);
		memset(out, 0xa5, sizeof(out));
		memset(ref, 0xa5, sizeof(ref));
		int want = ref_depad(ref, outsize, em, k);
		int got = kwp_pkcs1_type2_depad(out, outsize, em, k);
		CHECK_EQ(got, want);
		if (got >= 0) {
			CHECK(memcmp(out, ref, (size_t)got) == 0);
			valid++;
		} else {
			invalid++;
		}
	}
	CHECK(valid > 2000 && invalid > 2000);
	/* Blocks below the minimum size are refused outright (a public length). */
	memset(em, 0, 11);
	em[1] = 2;
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, 10), -1);
}

/* ref_hmac is HMAC-SHA256 through EVP_MAC (the code under test uses HMAC()). */
static void ref_hmac(const uint8_t *key, size_t klen, const uint8_t *a, size_t alen,
                     uint8_t mac[32])
{
	size_t n = 32;
	EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
	EVP_MAC_CTX *c = m != NULL ? EVP_MAC_CTX_new(m) : NULL;
	OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
	                  OSSL_PARAM_construct_end()};
	CHECK(c != NULL && EVP_MAC_init(c, key, klen, p) == 1 && EVP_MAC_update(c, a, alen) == 1 &&
	      EVP_MAC_final(c, mac, &n, 32) == 1 && n == 32);
	EVP_MAC_CTX_free(c);
	EVP_MAC_free(m);
}

static void ref_prf(uint8_t *to, size_t tlen, const char *label, const uint8_t kdk[32])
{
	uint8_t msg[32], mac[32];
	size_t ll = strlen(label);
	for (size_t pos = 0, it = 0; pos < tlen; pos += 32, it++) {
		msg[0] = (uint8_t)(it >> 8);
		msg[1] = (uint8_t)it;
		memcpy(msg + 2, label, ll);
		msg[2 + ll] = (uint8_t)((tlen * 8) >> 8);
		msg[3 + ll] = (uint8_t)(tlen * 8);
		ref_hmac(kdk, 32, msg, ll + 4, mac);
		memcpy(to + pos, mac, tlen - pos < 32 ? tlen - pos : 32);
	}
}

/* ref_implicit_rej: the draft's steps, plainly. */
static int ref_implicit_rej(EVP_PKEY *key, const uint8_t *ct, size_t ctlen, const uint8_t *em,
                            size_t k, uint8_t *out, size_t outsize)
{
	uint8_t buf[512], dh[32], kdk[32], synth[512], lens[256];
	BIGNUM *d = NULL;
	int n = ref_depad(out, outsize, em, k);
	if (n >= 0)
		return n;
	CHECK(EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_D, &d) == 1);
	CHECK(BN_bn2binpad(d, buf, (int)k) == (int)k);
	BN_clear_free(d);
	CHECK(EVP_Digest(buf, k, dh, NULL, EVP_sha256(), NULL) == 1);
	memset(buf, 0, k);
	memcpy(buf + k - ctlen, ct, ctlen);
	ref_hmac(dh, 32, buf, k, kdk);
	ref_prf(synth, k, "message", kdk);
	ref_prf(lens, sizeof(lens), "length", kdk);
	size_t mask = 1, len = 0;
	while (mask < k - 10)
		mask = mask << 1 | 1;
	for (size_t i = 0; i < sizeof(lens); i += 2) {
		size_t c = ((size_t)lens[i] << 8 | lens[i + 1]) & mask;
		if (c < k - 10)
			len = c;
	}
	/* Its first outsize bytes when the buffer is short, as OpenSSL 3.2. */
	size_t copy = len < outsize ? len : outsize;
	memcpy(out, synth + (k - len), copy);
	return (int)copy;
}

static void test_implicit_rejection(void)
{
	static const unsigned bits[] = {1024, 2048};
	for (size_t b = 0; b < 2; b++) {
		EVP_PKEY *key = EVP_RSA_gen(bits[b]);
		size_t k = bits[b] / 8;
		uint8_t ct[256], em[256], out[256], ref[256], kdk[KWP_KDK_LEN], prev[256];
		CHECK(key != NULL);
		if (key == NULL)
			return;
		for (int round = 0; round < 200; round++) {
			/* A random ciphertext (below n: top byte clear), decrypted raw. */
			size_t ctlen = k - (round % 5 == 0); /* sometimes one byte short */
			CHECK(RAND_bytes(ct, (int)ctlen) == 1);
			ct[0] &= 0x3f;
			EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
			size_t n = k;
			CHECK(c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
			      EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1 &&
			      EVP_PKEY_decrypt(c, em, &n, ct, ctlen) == 1 && n == k);
			EVP_PKEY_CTX_free(c);
			if (round % 3 == 0) { /* make it valid in place: a real message */
				em[0] = 0, em[1] = 2;
				for (size_t i = 2; i < 12; i++)
					em[i] |= (uint8_t)(em[i] == 0);
				em[12 + round % (k - 12)] = 0;
			}
			size_t outsize = round % 7 == 0 ? rnd32() % (k + 1) : k;
			CHECK_EQ(kwp_rsa_kdk(key, ct, ctlen, k, kdk), 0);
			int got = kwp_pkcs1_implicit_rej(out, outsize, em, k, kdk);
			int want = ref_implicit_rej(key, ct, ctlen, em, k, ref, outsize);
			CHECK(got >= 0);
			CHECK_EQ(got, want);
			CHECK(got < 0 || memcmp(out, ref, (size_t)got) == 0);
			/* Deterministic: the same ciphertext gives the same answer. */
			CHECK_EQ(kwp_pkcs1_implicit_rej(prev, outsize, em, k, kdk), got);
			CHECK(got <= 0 || memcmp(prev, out, (size_t)got) == 0);
		}
		EVP_PKEY_free(key);
	}
}

int main(void)
{
	test_differential();
	test_implicit_rejection();
	CHECK_DONE();
}
