/*
 * store.c - the keyway: URI scheme for OSSL_STORE (openssl -key/-inkey
 * keyway:ski=...;cert=...). Opening reads the certificate or public key the
 * URI names and checks its SKI; nothing contacts a keyserver. Loading
 * yields one key, as a reference our keymgmt loads.
 *
 * No EXPORT_OBJECT: when libcrypto picks another provider's keymgmt first,
 * an export would hand it the public half only and make a key that cannot
 * sign; without it libcrypto falls back to our keymgmt.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/params.h>

#include "algorithms.h"
#include "context.h"
#include "keyref.h"

struct store_ctx {
	struct kwp_prov *prov;
	unsigned char *blob;
	size_t blob_len;
	int type;
	int done;
};

static void *store_open(void *provctx, const char *uri)
{
	struct kwp_prov *prov = provctx;
	struct store_ctx *ctx = NULL;
	unsigned char *der = NULL;
	size_t der_len = 0;
	char err[512];
	int reason;

	if (kwp_ref_from_uri(uri, &der, &der_len, &reason, err, sizeof(err)) < 0) {
		kwp_raise(prov, reason, "%s", err);
		return NULL;
	}
	int type = kwp_ref_type(der, der_len);
	if (type < 0) {
		kwp_raise(prov, KWP_R_UNSUPPORTED_KEY,
		          "%s: not an RSA, EC (P-256/384/521) or Ed25519 key", uri);
		goto err;
	}
	if ((ctx = calloc(1, sizeof(*ctx))) == NULL ||
	    kwp_ref_blob(prov, der, der_len, &ctx->blob, &ctx->blob_len) < 0) {
		kwp_raise(prov, KWP_R_INTERNAL, "out of memory");
		goto err;
	}
	ctx->prov = prov;
	ctx->type = type;
	OPENSSL_free(der);
	return ctx;
err:
	OPENSSL_free(der);
	free(ctx);
	return NULL;
}

static int store_load(void *loaderctx, OSSL_CALLBACK *object_cb, void *object_cbarg,
                      OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
	struct store_ctx *ctx = loaderctx;
	int object_type = OSSL_OBJECT_PKEY;
	OSSL_PARAM params[4];

	if (ctx->done)
		return 0;
	ctx->done = 1;
	params[0] = OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type);
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
	                                             (char *)kw_key_type_name(ctx->type), 0);
	params[2] = OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, ctx->blob,
	                                              ctx->blob_len);
	params[3] = OSSL_PARAM_construct_end();
	return object_cb(params, object_cbarg);
}

static int store_eof(void *loaderctx)
{
	return ((struct store_ctx *)loaderctx)->done;
}

static int store_close(void *loaderctx)
{
	struct store_ctx *ctx = loaderctx;
	if (ctx != NULL) {
		OPENSSL_free(ctx->blob);
		free(ctx);
	}
	return 1;
}

static const OSSL_PARAM *store_settable_ctx_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_int(OSSL_STORE_PARAM_EXPECT, NULL),
	    OSSL_PARAM_END,
	};
	return p;
}

static int store_set_ctx_params(void *loaderctx, const OSSL_PARAM params[])
{
	/* A keyway URI names one key whatever is expected; libcrypto filters by type. */
	return 1;
}

const OSSL_DISPATCH kwp_store_functions[] = {
    {OSSL_FUNC_STORE_OPEN, (void (*)(void))store_open},
    {OSSL_FUNC_STORE_LOAD, (void (*)(void))store_load},
    {OSSL_FUNC_STORE_EOF, (void (*)(void))store_eof},
    {OSSL_FUNC_STORE_CLOSE, (void (*)(void))store_close},
    {OSSL_FUNC_STORE_SETTABLE_CTX_PARAMS, (void (*)(void))store_settable_ctx_params},
    {OSSL_FUNC_STORE_SET_CTX_PARAMS, (void (*)(void))store_set_ctx_params},
    {0, NULL},
};
