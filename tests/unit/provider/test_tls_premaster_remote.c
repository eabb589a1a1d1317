/*
 * test_tls_premaster_remote.c - the TLS 1.2 premaster form with a keyserver
 * that removes the padding itself (as the C keyless server does): its 48-byte
 * answer is checked for the client version, and its crypto error (its answer
 * to bad padding) gives the random premaster, never a failure or a queued
 * error, like any other bad padding.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/rsa.h>
#include <openssl/store.h>

#include "keyless_fixture.h"
#include "keyway/keyid.h"
#include "keyway/protocol.h"
#include "keyway/provider_api.h"

static atomic_int mode; /* 0: crypto error, 1: 48 bytes 03 03 ..., 2: 48 bytes 03 01 ... */

static void handle(void *arg, int fd, uint32_t id, const struct kw_msg *m)
{
	(void)arg;
	uint8_t pms[48];
	if (m->opcode == KW_OP_PING) {
		poll_server_reply(fd, id, KW_OP_PONG, m->payload.data, m->payload.len);
		return;
	}
	if (atomic_load(&mode) == 0) {
		uint8_t e = KW_ERR_CRYPTO;
		poll_server_reply(fd, id, KW_OP_ERROR, &e, 1);
		return;
	}
	memset(pms, 0x5a, sizeof(pms));
	pms[0] = 3;
	pms[1] = atomic_load(&mode) == 1 ? 3 : 1;
	poll_server_reply(fd, id, KW_OP_RESPONSE, pms, sizeof(pms));
}

/* decrypt_tls runs the premaster form: 1 with out filled, or 0. */
static int decrypt_tls(EVP_PKEY *key, uint8_t out[48], size_t *outlen)
{
	uint8_t ct[256] = {1};
	unsigned v = 0x0303;
	OSSL_PARAM p[] = {OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, &v),
	                  OSSL_PARAM_END};
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, key, "provider=keyway");
	*outlen = 48;
	int ok = c != NULL && EVP_PKEY_decrypt_init(c) == 1 &&
	         EVP_PKEY_CTX_set_rsa_padding(c, RSA_PKCS1_WITH_TLS_PADDING) == 1 &&
	         EVP_PKEY_CTX_set_params(c, p) == 1 &&
	         EVP_PKEY_decrypt(c, out, outlen, ct, sizeof(ct)) == 1;
	EVP_PKEY_CTX_free(c);
	return ok;
}

int main(void)
{
	struct fake_keyserver ks;
	char servers[160], pub[64], uri[256], hex[2 * KW_SKI_LEN + 1];
	uint8_t ski[KW_SKI_LEN], out[48], again[48];
	size_t n;

	fake_keyserver_start(&ks, "pms", 0, handle, NULL, NULL);
	snprintf(servers, sizeof(servers), "unix:%s", ks.path);
	setenv("KEYWAY_SERVERS", servers, 1);
	EVP_PKEY *rsa = EVP_RSA_gen(2048);
	snprintf(pub, sizeof(pub), "/tmp/kw-pms-%d.pem", (int)getpid());
	FILE *f = fopen(pub, "w");
	CHECK(rsa != NULL && f != NULL && PEM_write_PUBKEY(f, rsa) == 1);
	fclose(f);
	CHECK_EQ(kw_key_ski(rsa, ski), 0);
	kw_hex(hex, ski, KW_SKI_LEN);
	snprintf(uri, sizeof(uri), "keyway:ski=%s;cert=%s", hex, pub);

	CHECK(OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) == 1);
	OSSL_PROVIDER *kp = OSSL_PROVIDER_load(NULL, "keyway");
	OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
	CHECK(kp != NULL && dp != NULL);
	EVP_PKEY *key = NULL;
	OSSL_STORE_CTX *st =
	    OSSL_STORE_open_ex(uri, NULL, "provider=keyway", NULL, NULL, NULL, NULL, NULL);
	while (st != NULL && key == NULL && !OSSL_STORE_eof(st)) {
		OSSL_STORE_INFO *i = OSSL_STORE_load(st);
		if (i != NULL && OSSL_STORE_INFO_get_type(i) == OSSL_STORE_INFO_PKEY)
			key = OSSL_STORE_INFO_get1_PKEY(i);
		OSSL_STORE_INFO_free(i);
	}
	OSSL_STORE_close(st);
	CHECK(key != NULL);
	if (key == NULL)
		return 1;

	/* The keyserver's bad-padding error: random premaster, no error queued. */
	atomic_store(&mode, 0);
	ERR_clear_error();
	CHECK(decrypt_tls(key, out, &n));
	CHECK_EQ(n, 48);
	CHECK_EQ(ERR_peek_error(), 0);
	CHECK(decrypt_tls(key, again, &n));
	CHECK(memcmp(out, again, 48) != 0); /* fresh randomness each time */

	/* A 48-byte answer with the client's version: that premaster. */
	atomic_store(&mode, 1);
	CHECK(decrypt_tls(key, out, &n));
	CHECK(n == 48 && out[0] == 3 && out[1] == 3 && out[47] == 0x5a);

	/* A 48-byte answer with another version: random, like bad padding. */
	atomic_store(&mode, 2);
	CHECK(decrypt_tls(key, out, &n));
	CHECK(n == 48 && !(out[0] == 3 && out[1] == 1 && out[47] == 0x5a));

	EVP_PKEY_free(key);
	EVP_PKEY_free(rsa);
	unlink(pub);
	OSSL_PROVIDER_unload(dp);
	OSSL_PROVIDER_unload(kp);
	fake_keyserver_stop(&ks);
	CHECK_DONE();
}
