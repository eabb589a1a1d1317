/*
 * test_rsa_implicit_rej.c - RSA PKCS#1 v1.5 decryption through the provider
 * with a wrapped local key: a valid ciphertext gives its message, a bad one
 * gives the implicit-rejection synthetic message (the same one every time,
 * never an error), and the TLS premaster form still answers 48 bytes.
 */
#include <string.h>

#include <openssl/evp.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/provider_api.h"
#include "tls_depad.h"

#define K 256

/* decrypt through the keyway key with PKCS#1 v1.5: 1 and *outlen, or 0. */
static int decrypt(EVP_PKEY *key, const uint8_t *ct, size_t ctlen, uint8_t *out, size_t *outlen)
{
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, key, "provider=keyway");
	*outlen = K;
	int ok = c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
	         EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_PADDING) == 1 &&
	         EVP_PKEY_decrypt(c, out, outlen, ct, ctlen) == 1;
	EVP_PKEY_CTX_free(c);
	return ok;
}

int main(void)
{
	CHECK(OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) == 1);
	OSSL_PROVIDER *kp = OSSL_PROVIDER_load(NULL, "keyway");
	OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
	CHECK(kp != NULL && dp != NULL);
	EVP_PKEY *local = EVP_RSA_gen(2048), *wrapped = NULL;
	CHECK(local != NULL && kw_provider_wrap_key(NULL, local, &wrapped) == 1);
	if (wrapped == NULL)
		return 1;

	/* A valid ciphertext: the message. */
	uint8_t msg[20] = "implicit rejection", ct[K], out[K], again[K], block[K], ref[K];
	size_t ctlen = K, n, n2;
	EVP_PKEY_CTX *e = EVP_PKEY_CTX_new(local, NULL);
	CHECK(e != NULL && EVP_PKEY_encrypt_init(e) == 1 &&
	      EVP_PKEY_encrypt(e, ct, &ctlen, msg, sizeof(msg)) == 1);
	EVP_PKEY_CTX_free(e);
	CHECK(decrypt(wrapped, ct, ctlen, out, &n));
	CHECK(n == sizeof(msg) && memcmp(out, msg, n) == 0);

	/* Bad padding: success with the synthetic message, deterministic per ciphertext. */
	int differ = 0;
	for (int i = 0; i < 20; i++) {
		CHECK(RAND_bytes(ct, K) == 1);
		ct[0] &= 0x3f;
		CHECK(decrypt(wrapped, ct, K, out, &n));
		CHECK(decrypt(wrapped, ct, K, again, &n2));
		CHECK(n == n2 && memcmp(out, again, n) == 0);
		/* ... and it is the draft's message for this key and ciphertext. */
		EVP_PKEY_CTX *r = EVP_PKEY_CTX_new(local, NULL);
		size_t bl = K;
		uint8_t kdk[KWP_KDK_LEN];
		CHECK(r != NULL && EVP_PKEY_decrypt_init(r) == 1 &&
		      EVP_PKEY_CTX_set_rsa_padding(r, RSA_NO_PADDING) == 1 &&
		      EVP_PKEY_decrypt(r, block, &bl, ct, K) == 1);
		EVP_PKEY_CTX_free(r);
		CHECK_EQ(kwp_rsa_kdk(local, ct, K, K, kdk), 0);
		CHECK_EQ(kwp_pkcs1_implicit_rej(ref, K, block, K, kdk), (long long)n);
		CHECK(memcmp(ref, out, n) == 0);
		differ += n != sizeof(msg);
	}
	CHECK(differ > 0);

	EVP_PKEY_free(wrapped);
	EVP_PKEY_free(local);
	OSSL_PROVIDER_unload(dp);
	OSSL_PROVIDER_unload(kp);
	CHECK_DONE();
}
