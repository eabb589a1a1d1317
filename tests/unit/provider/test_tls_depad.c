/*
 * test_tls_depad.c - the constant-time depadding of raw RSA blocks: the TLS
 * premaster form (RFC 5246 7.4.7.1) on valid, bad-padding, wrong-length and
 * wrong-version blocks, and PKCS#1 v1.5 type 2 removal, both against blocks
 * made by hand and against OpenSSL's own RSA encryption.
 */
#include <errno.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "tls_depad.h"

#define K 256 /* RSA-2048 */
#define PMS KWP_TLS_PREMASTER_LEN

/* make_block builds 00 02 PS 00 M with M of mlen bytes (version bytes first when mlen >= 2). */
static void make_block(uint8_t em[K], size_t mlen, unsigned version)
{
	RAND_bytes(em, K);
	em[0] = 0;
	em[1] = 2;
	for (size_t i = 2; i < K - mlen - 1; i++)
		if (em[i] == 0)
			em[i] = 0x5a;
	em[K - mlen - 1] = 0;
	if (mlen >= 2) {
		em[K - mlen] = (uint8_t)(version >> 8);
		em[K - mlen + 1] = (uint8_t)version;
	}
}

/* depad_twice runs the TLS depadding twice with fresh randoms; returns 1 if the block was accepted.
 */
static int depad_twice(const uint8_t em[K], unsigned cv, unsigned alt, int *differs)
{
	uint8_t r1[PMS], r2[PMS], o1[PMS], o2[PMS];

	RAND_bytes(r1, PMS);
	RAND_bytes(r2, PMS);
	memset(o1, 0xee, PMS);
	memset(o2, 0xee, PMS);
	CHECK_EQ(kwp_tls_depad(o1, em, K, cv, alt, r1), 0);
	CHECK_EQ(kwp_tls_depad(o2, em, K, cv, alt, r2), 0);
	*differs = memcmp(o1, o2, PMS) != 0;
	int accepted = memcmp(o1, em + K - PMS, PMS) == 0;
	if (!accepted) {
		/* Rejected: the output is the whole random premaster, all 48 bytes of it. */
		CHECK(memcmp(o1, r1, PMS) == 0);
		CHECK(memcmp(o2, r2, PMS) == 0);
	}
	return accepted;
}

static void test_tls_forms(void)
{
	uint8_t em[K];
	int differs;

	/* Valid. */
	make_block(em, PMS, 0x0303);
	CHECK(depad_twice(em, 0x0303, 0, &differs));
	CHECK(!differs);

	/* Invalid padding: each defect on its own. */
	make_block(em, PMS, 0x0303);
	em[0] = 1;
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	make_block(em, PMS, 0x0303);
	em[1] = 1;
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	make_block(em, PMS, 0x0303);
	em[1] = 0x82;
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	for (size_t zero_at = 2; zero_at < K - PMS - 1; zero_at += 37) {
		make_block(em, PMS, 0x0303);
		em[zero_at] = 0; /* a zero inside PS */
		CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	}
	make_block(em, PMS, 0x0303);
	em[K - PMS - 1] = 7; /* no separator */
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);

	/* Wrong length: a 47- and a 49-byte message. */
	make_block(em, PMS - 1, 0x0303);
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	make_block(em, PMS + 1, 0x0303);
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);

	/* Wrong version, either byte. */
	make_block(em, PMS, 0x0301);
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	make_block(em, PMS, 0x0203);
	CHECK(!depad_twice(em, 0x0303, 0, &differs) && differs);
	/* ... unless it is the negotiated version and the rollback workaround names it. */
	make_block(em, PMS, 0x0301);
	CHECK(depad_twice(em, 0x0303, 0x0301, &differs));
	make_block(em, PMS, 0x0302);
	CHECK(!depad_twice(em, 0x0303, 0x0301, &differs) && differs);

	/* A modulus too small to hold 11 bytes of padding and 48 of premaster. */
	uint8_t out[PMS], rnd[PMS] = {0};
	CHECK_EQ(kwp_tls_depad(out, em, PMS + 10, 0x0303, 0, rnd), -EINVAL);
	CHECK_EQ(kwp_tls_depad(out, em, PMS + 11, 0x0303, 0, rnd), 0);
}

static void test_pkcs1_forms(void)
{
	uint8_t em[K], out[K];

	for (size_t mlen = 0; mlen <= K - 11; mlen += (mlen < 64 ? 1 : 29)) {
		make_block(em, mlen, 0);
		memset(out, 0, sizeof(out));
		CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, K), (long long)mlen);
		CHECK(memcmp(out, em + K - mlen, mlen) == 0);
		/* One byte short of room. */
		if (mlen > 0)
			CHECK_EQ(kwp_pkcs1_type2_depad(out, mlen - 1, em, K), -1);
	}
	make_block(em, 20, 0);
	em[0] = 1;
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, K), -1);
	make_block(em, 20, 0);
	em[1] = 1;
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, K), -1);
	make_block(em, 20, 0);
	em[K - 21] = 9; /* the separator gone: the first zero is elsewhere or nowhere */
	for (size_t i = 2; i < K; i++)
		if (em[i] == 0)
			em[i] = 1;
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, K), -1);
	make_block(em, K - 11, 0);
	em[5] = 0; /* PS of 3 bytes: too short */
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, K), -1);
	CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), em, 10), -1);
}

/* raw_decrypt gives the k-byte block a keyserver would return for ct. */
static size_t raw_decrypt(EVP_PKEY *key, const uint8_t *ct, size_t ctlen, uint8_t *block)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
	size_t n = K;
	CHECK(c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
	      EVP_PKEY_CTX_set_rsa_padding(c, RSA_NO_PADDING) == 1 &&
	      EVP_PKEY_decrypt(c, block, &n, ct, ctlen) == 1);
	EVP_PKEY_CTX_free(c);
	return n;
}

static size_t encrypt(EVP_PKEY *key, const uint8_t *m, size_t mlen, uint8_t *ct)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new(key, NULL);
	size_t n = K;
	CHECK(c != NULL && EVP_PKEY_encrypt_init(c) == 1 &&
	      EVP_PKEY_encrypt(c, ct, &n, m, mlen) == 1);
	EVP_PKEY_CTX_free(c);
	return n;
}

static void test_with_openssl(void)
{
	EVP_PKEY *key = EVP_RSA_gen(2048);
	uint8_t pms[PMS], ct[K], block[K], out[K], rnd[PMS];

	CHECK(key != NULL);
	if (key == NULL)
		return;
	for (int round = 0; round < 8; round++) {
		RAND_bytes(pms, PMS);
		pms[0] = 3;
		pms[1] = 3;
		size_t n = encrypt(key, pms, PMS, ct);
		CHECK_EQ(raw_decrypt(key, ct, n, block), K);
		RAND_bytes(rnd, PMS);
		CHECK_EQ(kwp_tls_depad(out, block, K, 0x0303, 0, rnd), 0);
		CHECK(memcmp(out, pms, PMS) == 0);
		/* The same block against a client that said TLS 1.1: random. */
		CHECK_EQ(kwp_tls_depad(out, block, K, 0x0302, 0, rnd), 0);
		CHECK(memcmp(out, rnd, PMS) == 0);
		/* PKCS#1 removal of a message of another length. */
		size_t mlen = (size_t)round * 25;
		n = encrypt(key, pms, mlen > PMS ? PMS : mlen, ct);
		CHECK_EQ(raw_decrypt(key, ct, n, block), K);
		CHECK_EQ(kwp_pkcs1_type2_depad(out, sizeof(out), block, K),
		         (long long)(mlen > PMS ? PMS : mlen));
		CHECK(memcmp(out, pms, mlen > PMS ? PMS : mlen) == 0);
	}
	EVP_PKEY_free(key);
}

int main(void)
{
	test_tls_forms();
	test_pkcs1_forms();
	test_with_openssl();
	CHECK_DONE();
}
