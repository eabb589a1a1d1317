/* keyid.c - SKI and modulus digest as gokeyless computes them (see keyway/keyid.h). */
#include "keyway/keyid.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"

int kw_key_ski(const EVP_PKEY *key, uint8_t out[KW_SKI_LEN])
{
	X509_PUBKEY *xpk = NULL;
	const unsigned char *bits = NULL;
	int bits_len = 0;
	int rc = -KW_ECRYPTO;

	/* X509_PUBKEY_set wants a non-const key but does not modify it. */
	if (X509_PUBKEY_set(&xpk, (EVP_PKEY *)key) != 1)
		goto out;
	if (X509_PUBKEY_get0_param(NULL, &bits, &bits_len, NULL, xpk) != 1 || bits_len < 0)
		goto out;
	SHA1(bits, (size_t)bits_len, out);
	rc = 0;
out:
	X509_PUBKEY_free(xpk);
	return rc;
}

int kw_key_digest(const EVP_PKEY *key, uint8_t out[KW_DIGEST_LEN])
{
	BIGNUM *n = NULL;
	char *hex = NULL;
	int rc = -EINVAL;

	if (!EVP_PKEY_is_a(key, "RSA"))
		return -EINVAL;
	if (EVP_PKEY_get_bn_param(key, OSSL_PKEY_PARAM_RSA_N, &n) != 1)
		goto out;
	/* Go's fmt "%X" of a big.Int: upper-case, no leading zeros. BN_bn2hex is upper-case too. */
	hex = BN_bn2hex(n);
	if (hex == NULL)
		goto out;
	const char *h = hex;
	while (h[0] == '0' && h[1] != '\0')
		h++;
	SHA256((const unsigned char *)h, strlen(h), out);
	rc = 0;
out:
	OPENSSL_free(hex);
	BN_free(n);
	return rc;
}

static EVP_PKEY *pubkey_from_private(EVP_PKEY *priv)
{
	/* Round-trip through SubjectPublicKeyInfo DER so no private part survives. */
	unsigned char *der = NULL;
	int len = i2d_PUBKEY(priv, &der);
	if (len <= 0)
		return NULL;
	const unsigned char *p = der;
	EVP_PKEY *pub = d2i_PUBKEY(NULL, &p, len);
	OPENSSL_free(der);
	return pub;
}

int kw_load_public_key(const char *path, EVP_PKEY **out)
{
	BIO *bio = NULL;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	int rc;

	*out = NULL;
	bio = BIO_new_file(path, "rb");
	if (bio == NULL) {
		rc = errno ? -errno : -ENOENT;
		ERR_clear_error();
		return rc;
	}
	/* Try, in order: PEM certificate, PEM public key, PEM private key, then DER forms. */
	if ((cert = PEM_read_bio_X509(bio, NULL, kw_pem_no_password, NULL)) != NULL)
		goto have_cert;
	(void)BIO_reset(bio);
	if ((key = PEM_read_bio_PUBKEY(bio, NULL, kw_pem_no_password, NULL)) != NULL)
		goto done;
	(void)BIO_reset(bio);
	if ((key = PEM_read_bio_PrivateKey(bio, NULL, kw_pem_no_password, NULL)) != NULL)
		goto have_private;
	(void)BIO_reset(bio);
	if ((cert = d2i_X509_bio(bio, NULL)) != NULL)
		goto have_cert;
	(void)BIO_reset(bio);
	if ((key = d2i_PUBKEY_bio(bio, NULL)) != NULL)
		goto done;
	(void)BIO_reset(bio);
	if ((key = d2i_PrivateKey_bio(bio, NULL)) != NULL)
		goto have_private;
	rc = -KW_ECRYPTO;
	goto out;

have_cert:
	key = X509_get_pubkey(cert);
	goto done;
have_private : {
	EVP_PKEY *pub = pubkey_from_private(key);
	EVP_PKEY_free(key); /* EVP_PKEY_free wipes private components */
	key = pub;
}
done:
	rc = key != NULL ? 0 : -KW_ECRYPTO;
	*out = key;
out:
	ERR_clear_error();
	X509_free(cert);
	BIO_free(bio);
	return rc;
}

void kw_hex(char *out, const uint8_t *p, size_t n)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[p[i] >> 4];
		out[2 * i + 1] = digits[p[i] & 15];
	}
	out[2 * n] = '\0';
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower(c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int kw_unhex(uint8_t *out, size_t n, const char *hex)
{
	if (strlen(hex) != 2 * n)
		return -EINVAL;
	for (size_t i = 0; i < n; i++) {
		int hi = hexval((unsigned char)hex[2 * i]),
		    lo = hexval((unsigned char)hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -EINVAL;
		out[i] = (uint8_t)(hi << 4 | lo);
	}
	return 0;
}
