/*
 * test_rsa_batch_fallback.c - KEYWAY_RSA_BATCH_IFMA=off forces the OpenSSL
 * path (as on a CPU without IFMA): the kernel is never used and every lane
 * still equals OpenSSL's result.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/rsa_batch.h"

int main(void)
{
	struct kw_rsa_batch_item items[KW_RSA_BATCH_MAX];
	uint8_t in[KW_RSA_BATCH_MAX][256], out[KW_RSA_BATCH_MAX][256], want[256];
	struct kw_rsa_batch_stats st;
	struct kw_rsa_batch_key *key = NULL;
	EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);

	/* Read once, at the first use: set before anything asks. */
	setenv("KEYWAY_RSA_BATCH_IFMA", "off", 1);
	CHECK(!kw_rsa_batch_available());
	CHECK(pkey != NULL);
	CHECK_EQ(kw_rsa_batch_key_new(&key, pkey), 0);
	if (key == NULL)
		CHECK_DONE();
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
		RAND_bytes(in[i], 256);
		in[i][0] &= 0x7f;
		items[i] = (struct kw_rsa_batch_item){key, in[i], out[i], -1};
	}
	kw_rsa_batch_run(items, KW_RSA_BATCH_MAX);
	for (int i = 0; i < KW_RSA_BATCH_MAX; i++) {
		EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
		size_t len = sizeof(want);
		CHECK_EQ(items[i].rc, 0);
		CHECK(ctx != NULL && EVP_PKEY_decrypt_init(ctx) == 1 &&
		      EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
		      EVP_PKEY_decrypt(ctx, want, &len, in[i], 256) == 1);
		CHECK(memcmp(want, out[i], 256) == 0);
		EVP_PKEY_CTX_free(ctx);
	}
	kw_rsa_batch_stats(&st);
	CHECK_EQ(st.batches, 0);
	CHECK_EQ(st.lanes, 0);
	CHECK_EQ(st.openssl_lanes, KW_RSA_BATCH_MAX);
	kw_rsa_batch_key_free(key);
	EVP_PKEY_free(pkey);
	CHECK_DONE();
}
