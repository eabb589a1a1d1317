/*
 * test_local_import.c - the keymgmt import that wraps a local key takes the
 * key only from kw_provider_wrap_key: EVP_PKEY_fromdata callers cannot hand
 * the provider a raw EVP_PKEY pointer (or any address) through OSSL_PARAM.
 */
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "check.h"
#include "keyref.h"
#include "keyway/provider_api.h"

/* EVP_PKEY_fromdata through the keyway EC keymgmt with params: 1 if a key came out. */
static int fromdata(const OSSL_PARAM *params)
{
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *out = NULL;
	/* The provider may sit out its very first key-management query. */
	for (int i = 0; i < 2 && ctx == NULL; i++)
		ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", "provider=keyway");
	CHECK(ctx != NULL);
	int ok = ctx != NULL && EVP_PKEY_fromdata_init(ctx) == 1 &&
	         EVP_PKEY_fromdata(ctx, &out, EVP_PKEY_KEYPAIR, (OSSL_PARAM *)params) == 1;
	EVP_PKEY_free(out);
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

int main(void)
{
	CHECK(OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) == 1);
	OSSL_PROVIDER *kp = OSSL_PROVIDER_load(NULL, "keyway");
	OSSL_PROVIDER *dp = OSSL_PROVIDER_load(NULL, "default");
	CHECK(kp != NULL && dp != NULL);
	EVP_PKEY *local = EVP_EC_gen("P-256");
	CHECK(local != NULL);

	/* The former encoding: a magic followed by the key's address. */
	unsigned char blob[8 + sizeof(EVP_PKEY *)];
	memcpy(blob, "kwlocal\x01", 8);
	memcpy(blob + 8, &local, sizeof(local));
	OSSL_PARAM pointer[] = {
	    OSSL_PARAM_octet_string(KWP_PARAM_LOCAL_KEY, blob, sizeof(blob)),
	    OSSL_PARAM_END,
	};
	CHECK(!fromdata(pointer));

	/* The current parameter, outside kw_provider_wrap_key: nothing is armed. */
	int one = 1;
	OSSL_PARAM flag[] = {OSSL_PARAM_int(KWP_PARAM_LOCAL_KEY, &one), OSSL_PARAM_END};
	CHECK(!fromdata(flag));

	/* The supported path wraps the key, and arms nothing for a later caller. */
	EVP_PKEY *wrapped = NULL;
	CHECK(kw_provider_wrap_key(NULL, local, &wrapped) == 1);
	CHECK(wrapped != NULL && EVP_PKEY_get_bits(wrapped) == 256);
	CHECK(wrapped != NULL && EVP_PKEY_eq(wrapped, local) == 1);
	CHECK(!fromdata(flag));

	EVP_PKEY_free(wrapped);
	EVP_PKEY_free(local);
	OSSL_PROVIDER_unload(dp);
	OSSL_PROVIDER_unload(kp);
	CHECK_DONE();
}
