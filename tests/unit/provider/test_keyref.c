/*
 * test_keyref.c - keyway: URIs and KEYWAY KEY references: parsing rules,
 * round trips for each key type, and every way a reference may lie
 * (another key's SKI, trailing bytes, truncation, unknown version).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "check.h"
#include "keyway/keyid.h"
#include "context.h"
#include "keyref.h"
#include "keyway/keyref.h"

static const char SKI[] = "00112233445566778899aabbccddeeff00112233";

static void test_uri_parse(void)
{
	uint8_t ski[KW_SKI_LEN];
	char *path = NULL, err[256], uri[512];

	snprintf(uri, sizeof(uri), "keyway:ski=%s;cert=/etc/c.pem", SKI);
	CHECK_EQ(kwp_uri_parse(uri, ski, &path, err, sizeof(err)), 0);
	CHECK(path && strcmp(path, "/etc/c.pem") == 0);
	CHECK(ski[0] == 0x00 && ski[19] == 0x33);
	free(path);
	/* Any order, upper-case hex and names, an empty attribute, %XX in the path. */
	CHECK_EQ(
	    kwp_uri_parse("KEYWAY:cert=/a%3Bb.pem;;SKI=00112233445566778899AABBCCDDEEFF00112233;",
	                  ski, &path, err, sizeof(err)),
	    0);
	CHECK(path && strcmp(path, "/a;b.pem") == 0);
	CHECK(ski[15] == 0xff);
	free(path);

	const char *bad[] = {
	    "pkcs11:ski=00112233445566778899aabbccddeeff00112233;cert=/c",
	    "keyway:cert=/c",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233",
	    "keyway:ski=0011;cert=/c",
	    "keyway:ski=zz112233445566778899aabbccddeeff00112233;cert=/c",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert=relative.pem",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert=/c;cert=/d",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert=/c;color=red",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert=/c%2",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert=/c%00",
	    "keyway:ski=00112233445566778899aabbccddeeff00112233;cert",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		path = NULL;
		err[0] = '\0';
		int rc = kwp_uri_parse(bad[i], ski, &path, err, sizeof(err));
		if (rc != -EINVAL || path != NULL || err[0] == '\0')
			fprintf(stderr, "accepted or unexplained: %s\n", bad[i]);
		CHECK_EQ(rc, -EINVAL);
		CHECK(path == NULL && err[0] != '\0');
	}
}

static void test_uri_format(void)
{
	uint8_t ski[KW_SKI_LEN], back[KW_SKI_LEN];
	char *path = NULL, err[256];

	memset(ski, 0xab, sizeof(ski));
	char *uri = kw_keyref_uri(ski, "/odd;dir/100%.pem");
	CHECK(uri != NULL);
	CHECK_EQ(kwp_uri_parse(uri, back, &path, err, sizeof(err)), 0);
	CHECK(memcmp(ski, back, sizeof(ski)) == 0);
	CHECK(path && strcmp(path, "/odd;dir/100%.pem") == 0);
	free(path);
	free(uri);
}

static EVP_PKEY *public_of(EVP_PKEY *priv)
{
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(priv, &der);
	const unsigned char *p = der;
	EVP_PKEY *pub = len > 0 ? d2i_PUBKEY(NULL, &p, len) : NULL;
	OPENSSL_free(der);
	return pub;
}

/* make_ref encodes a reference for pub whose URI names uri_ski (NULL: pub's own SKI). */
static int make_ref(EVP_PKEY *pub, const uint8_t *uri_ski, unsigned char **der, size_t *len)
{
	uint8_t ski[KW_SKI_LEN];
	CHECK_EQ(kw_key_ski(pub, ski), 0);
	char *uri = kw_keyref_uri(uri_ski ? uri_ski : ski, "/certs/x.pem");
	int rc = kwp_ref_encode(uri, pub, der, len);
	free(uri);
	return rc;
}

static void test_roundtrip(const char *what, EVP_PKEY *priv, enum kw_key_type type, int bits,
                           int max_size, const char *group)
{
	EVP_PKEY *pub = public_of(priv);
	unsigned char *der = NULL;
	size_t len = 0;
	char err[256];
	int reason = 0;
	uint8_t ski[KW_SKI_LEN];

	fprintf(stderr, "roundtrip %s\n", what);
	CHECK(pub != NULL);
	CHECK_EQ(make_ref(pub, NULL, &der, &len), 0);
	CHECK_EQ(kwp_ref_type(der, len), type);
	struct kwp_key *k = kwp_key_from_ref(NULL, der, len, &reason, err, sizeof(err));
	CHECK(k != NULL);
	if (k != NULL) {
		CHECK_EQ(kw_key_ski(pub, ski), 0);
		CHECK(memcmp(k->ski, ski, sizeof(ski)) == 0);
		CHECK_EQ(k->type, type);
		CHECK_EQ(k->bits, bits);
		CHECK_EQ(k->max_size, max_size);
		CHECK_EQ(k->max_size, EVP_PKEY_get_size(priv));
		CHECK_EQ(k->security_bits, EVP_PKEY_get_security_bits(priv));
		CHECK(group == NULL || (k->group && strcmp(k->group, group) == 0));
		CHECK(strncmp(k->uri, "keyway:ski=", 11) == 0);
		/* The SPKI carried is the key's. */
		unsigned char *spki = NULL;
		int slen = i2d_PUBKEY(pub, &spki);
		CHECK(slen > 0 && (size_t)slen == k->spki_len &&
		      memcmp(spki, k->spki, k->spki_len) == 0);
		OPENSSL_free(spki);
		kwp_key_unref(k);
	}

	/* The PEM block decodes back to the same DER. */
	char *pem = kwp_ref_pem(der, len);
	CHECK(pem && strstr(pem, "-----BEGIN " KWP_PEM_LABEL "-----") == pem);
	BIO *bio = BIO_new_mem_buf(pem, -1);
	char *name = NULL, *header = NULL;
	unsigned char *data = NULL;
	long dlen = 0;
	CHECK(PEM_read_bio(bio, &name, &header, &data, &dlen) == 1);
	CHECK(name && strcmp(name, KWP_PEM_LABEL) == 0 && (size_t)dlen == len &&
	      memcmp(data, der, len) == 0);
	OPENSSL_free(name);
	OPENSSL_free(header);
	OPENSSL_free(data);
	BIO_free(bio);

	/* keyway ref's public call makes the same block from the URI and the key. */
	uint8_t own[KW_SKI_LEN];
	CHECK_EQ(kw_key_ski(pub, own), 0);
	char *uri = kw_keyref_uri(own, "/certs/x.pem"), *pub_pem = NULL;
	CHECK_EQ(kw_keyref_pem(uri, pub, &pub_pem), 0);
	CHECK(pem && pub_pem && strcmp(pem, pub_pem) == 0);
	free(pub_pem);
	free(uri);
	free(pem);

	/* Lies and damage. */
	uint8_t other[KW_SKI_LEN] = {1, 2, 3};
	unsigned char *liar = NULL;
	size_t liar_len = 0;
	CHECK_EQ(make_ref(pub, other, &liar, &liar_len), 0);
	CHECK(kwp_key_from_ref(NULL, liar, liar_len, &reason, err, sizeof(err)) == NULL);
	CHECK_EQ(reason, KWP_R_SKI_MISMATCH);
	OPENSSL_free(liar);

	unsigned char *longer = malloc(len + 1);
	memcpy(longer, der, len);
	longer[len] = 0;
	CHECK(kwp_key_from_ref(NULL, longer, len + 1, &reason, err, sizeof(err)) == NULL);
	CHECK_EQ(reason, KWP_R_BAD_KEY_REF);
	CHECK_EQ(kwp_ref_type(longer, len + 1) < 0, 1);
	free(longer);
	for (size_t cut = 0; cut < len; cut += len / 7 + 1)
		CHECK(kwp_key_from_ref(NULL, der, cut, &reason, err, sizeof(err)) == NULL);
	/* version INTEGER 1 -> 2: after the SEQUENCE header, the INTEGER's tag and length. */
	size_t hdr = (der[1] & 0x80) ? 2 + (der[1] & 0x7f) : 2;
	CHECK(der[hdr] == 2 && der[hdr + 1] == 1 && der[hdr + 2] == 1);
	der[hdr + 2] = 2;
	CHECK(kwp_key_from_ref(NULL, der, len, &reason, err, sizeof(err)) == NULL);
	CHECK(strstr(err, "version") != NULL);

	der[hdr + 2] = 1;

	/* RSA: parameters other than NULL (05 00 -> an empty OCTET STRING 04 00) are refused. */
	static const unsigned char rsa_oid_null[] = {0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
	                                             0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
	bool found = false;
	for (size_t i = 0; type == KW_KEY_RSA && i + sizeof(rsa_oid_null) <= len; i++) {
		if (memcmp(der + i, rsa_oid_null, sizeof(rsa_oid_null)) != 0)
			continue;
		der[i + sizeof(rsa_oid_null) - 2] = 0x04;
		CHECK(kwp_key_from_ref(NULL, der, len, &reason, err, sizeof(err)) == NULL);
		CHECK(strstr(err, "parameters") != NULL);
		der[i + sizeof(rsa_oid_null) - 2] = 0x05;
		struct kwp_key *again = kwp_key_from_ref(NULL, der, len, &reason, err, sizeof(err));
		CHECK(again != NULL); /* and the untouched reference still loads */
		kwp_key_unref(again);
		found = true;
		break;
	}
	CHECK(found || type != KW_KEY_RSA);

	OPENSSL_free(der);
	EVP_PKEY_free(pub);
}

static void test_from_uri(EVP_PKEY *rsa, EVP_PKEY *ec)
{
	char path[] = "/tmp/kw-test-keyref-XXXXXX";
	int fd = mkstemp(path);
	FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
	uint8_t ski[KW_SKI_LEN], ec_ski[KW_SKI_LEN];
	unsigned char *der = NULL;
	size_t len = 0;
	char err[256];
	int reason = 0;

	CHECK(f != NULL);
	if (f == NULL)
		return;
	CHECK(PEM_write_PUBKEY(f, rsa) == 1);
	fclose(f);
	CHECK_EQ(kw_key_ski(rsa, ski), 0);
	CHECK_EQ(kw_key_ski(ec, ec_ski), 0);

	char *uri = kw_keyref_uri(ski, path);
	CHECK_EQ(kwp_ref_from_uri(uri, &der, &len, &reason, err, sizeof(err)), 0);
	CHECK_EQ(kwp_ref_type(der, len), KW_KEY_RSA);
	OPENSSL_free(der);
	free(uri);

	uri = kw_keyref_uri(ec_ski, path); /* the file holds another key */
	CHECK(kwp_ref_from_uri(uri, &der, &len, &reason, err, sizeof(err)) < 0);
	CHECK_EQ(reason, KWP_R_SKI_MISMATCH);
	free(uri);

	unlink(path);
	uri = kw_keyref_uri(ski, path);
	CHECK(kwp_ref_from_uri(uri, &der, &len, &reason, err, sizeof(err)) < 0);
	CHECK(strstr(err, path) != NULL);
	free(uri);
}

int main(void)
{
	test_uri_parse();
	test_uri_format();

	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	EVP_PKEY *p256 = EVP_EC_gen("P-256");
	EVP_PKEY *p384 = EVP_EC_gen("P-384");
	EVP_PKEY *p521 = EVP_EC_gen("P-521");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	CHECK(rsa && p256 && p384 && p521 && ed);
	if (rsa && p256 && p384 && p521 && ed) {
		test_roundtrip("rsa2048", rsa, KW_KEY_RSA, 2048, 256, NULL);
		test_roundtrip("p256", p256, KW_KEY_EC, 256, 72, "prime256v1");
		test_roundtrip("p384", p384, KW_KEY_EC, 384, 104, "secp384r1");
		test_roundtrip("p521", p521, KW_KEY_EC, 521, 139, "secp521r1");
		test_roundtrip("ed25519", ed, KW_KEY_ED25519, 256, 64, NULL);
		test_from_uri(rsa, p256);
	}
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(ed);
	CHECK_DONE();
}
