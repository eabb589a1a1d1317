/*
 * fuzz_keyref.c - libFuzzer harness for the names of keyway keys: keyway:
 * URIs and "KEYWAY KEY" reference PEM blocks, which reach the provider
 * from configuration and from any PEM file an application reads. The
 * first byte picks the form of the rest: a URI, PEM text (read as the
 * provider's decoder reads it: the first KEYWAY KEY block among up to 64),
 * or the reference DER. Whatever parses must survive a round trip: a URI
 * through its canonical form (kw_keyref_uri), a reference through
 * kwp_ref_encode and kw_keyref_pem, giving the same key back.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyway/keyref.h"
#include "keyref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_BLOCKS 64 /* as the provider's decoder */

static void check_uri(const char *uri)
{
	uint8_t ski[KW_SKI_LEN], ski2[KW_SKI_LEN];
	char err[256], *path = NULL, *path2 = NULL;

	if (kwp_uri_parse(uri, ski, &path, err, sizeof(err)) != 0) {
		if (path != NULL || err[0] == '\0')
			abort();
		return;
	}
	if (path == NULL || path[0] != '/')
		abort();
	char *canon = kw_keyref_uri(ski, path);
	if (canon == NULL || kwp_uri_parse(canon, ski2, &path2, err, sizeof(err)) != 0 ||
	    memcmp(ski, ski2, KW_SKI_LEN) != 0 || strcmp(path, path2) != 0)
		abort();
	/* The canonical form is a fixed point. */
	char *again = kw_keyref_uri(ski2, path2);
	if (again == NULL || strcmp(canon, again) != 0)
		abort();
	free(again);
	free(canon);
	free(path);
	free(path2);
}

/*
 * same_key compares what names and sizes a key. Not the SPKI bytes: OpenSSL
 * accepts any algorithm parameters for rsaEncryption and re-encodes them as
 * NULL, while the SKI covers only the public key bits.
 */
static void same_key(const struct kwp_key *a, const struct kwp_key *b)
{
	if (a->type != b->type || memcmp(a->ski, b->ski, KW_SKI_LEN) != 0 ||
	    strcmp(a->uri, b->uri) != 0 || a->bits != b->bits || a->max_size != b->max_size ||
	    a->security_bits != b->security_bits)
		abort();
}

/* check_reencoded builds the reference and its PEM again from k and reads them back. */
static void check_reencoded(const struct kwp_key *k)
{
	const unsigned char *p = k->spki;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, (long)k->spki_len);
	unsigned char *der = NULL;
	size_t der_len = 0;
	char err[256], *pem = NULL;
	int reason;

	if (pub == NULL || kwp_ref_encode(k->uri, pub, &der, &der_len) != 0)
		abort();
	struct kwp_key *k2 = kwp_key_from_ref(NULL, der, der_len, &reason, err, sizeof(err));
	if (k2 == NULL || kwp_ref_type(der, der_len) != (int)k->type)
		abort();
	same_key(k, k2);
	if (kw_keyref_pem(k->uri, pub, &pem) != 0 ||
	    strstr(pem, "-----BEGIN KEYWAY KEY-----") != pem)
		abort();
	kwp_key_unref(k2);
	free(pem);
	OPENSSL_free(der);
	EVP_PKEY_free(pub);
}

static void check_ref(const unsigned char *der, size_t len)
{
	char err[256];
	int reason = 0;

	int type = kwp_ref_type(der, len);
	struct kwp_key *k = kwp_key_from_ref(NULL, der, len, &reason, err, sizeof(err));
	if (k == NULL) {
		if (reason == 0 || err[0] == '\0')
			abort();
		ERR_clear_error();
		return;
	}
	if (type != (int)k->type || k->uri == NULL || k->spki == NULL || kwp_key_ref(k) != k)
		abort();
	kwp_key_unref(k); /* the reference just taken */
	check_reencoded(k);
	kwp_key_unref(k);
	ERR_clear_error();
}

static void check_pem(const uint8_t *data, size_t size)
{
	BIO *bio = BIO_new_mem_buf(data, (int)size);

	if (bio == NULL)
		abort();
	for (int i = 0; i < MAX_BLOCKS; i++) {
		char *name = NULL, *header = NULL;
		unsigned char *der = NULL;
		long len = 0;

		if (PEM_read_bio(bio, &name, &header, &der, &len) <= 0)
			break;
		int mine = strcmp(name, KWP_PEM_LABEL) == 0;
		if (mine)
			check_ref(der, (size_t)len);
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(der);
		if (mine)
			break;
	}
	ERR_clear_error();
	BIO_free(bio);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0 || size > 65536)
		return 0;
	char *text = malloc(size);
	if (text == NULL)
		abort();
	/* The rest as a C string: the form every caller hands a URI in. */
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	switch (data[0] % 3) {
	case 0:
		check_uri(text);
		break;
	case 1:
		check_pem(data + 1, size - 1);
		break;
	default:
		check_ref(data + 1, size - 1);
	}
	free(text);
	return 0;
}
