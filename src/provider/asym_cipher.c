/*
 * asym_cipher.c - RSA decryption by keyserver.
 *
 * The keyserver returns the raw k-byte block c^d mod n (as gokeyless does
 * for keys in memory); the padding is removed here:
 *   RSA_PKCS1_WITH_TLS_PADDING  libssl's TLS 1.2 RSA key exchange: RFC 5246
 *                               §7.4.7.1, always 48 bytes, a random
 *                               premaster (drawn before the decryption) on
 *                               any padding, length or version failure;
 *   RSA_PKCS1_PADDING           PKCS#1 v1.5 type 2, constant time; with a
 *                               local key, implicit rejection (a synthetic
 *                               message on bad padding, as OpenSSL 3.2);
 *   RSA_NO_PADDING              the block itself.
 * A keyserver that strips the padding itself (the C keyless server
 * answers the 48-byte premaster) is accepted in the TLS mode only.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "algorithms.h"
#include "async.h"
#include "context.h"
#include "keyref.h"
#include "tls_depad.h"

struct dec_ctx {
	struct kwp_prov *prov;
	struct kwp_key *key;
	int pad;
	unsigned client_version;
	unsigned alt_version;
};

static void *dec_newctx(void *provctx)
{
	struct dec_ctx *ctx = calloc(1, sizeof(*ctx));
	if (ctx != NULL) {
		ctx->prov = provctx;
		ctx->pad = RSA_PKCS1_PADDING;
	}
	return ctx;
}

static void dec_freectx(void *vctx)
{
	struct dec_ctx *ctx = vctx;
	if (ctx != NULL) {
		kwp_key_unref(ctx->key);
		free(ctx);
	}
}

static void *dec_dupctx(void *vctx)
{
	struct dec_ctx *src = vctx, *dst = malloc(sizeof(*dst));
	if (dst == NULL)
		return NULL;
	*dst = *src;
	if (dst->key != NULL)
		(void)kwp_key_ref(dst->key);
	return dst;
}

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[]);

static int dec_init(void *vctx, void *keydata, const OSSL_PARAM params[])
{
	struct dec_ctx *ctx = vctx;
	struct kwp_key *key = keydata;

	if (key == NULL || key->type != KW_KEY_RSA || key->spki == NULL) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED_KEY, "RSA decryption needs an RSA key");
		return 0;
	}
	(void)kwp_key_ref(key);
	kwp_key_unref(ctx->key);
	ctx->key = key;
	ctx->pad = RSA_PKCS1_PADDING;
	ctx->client_version = ctx->alt_version = 0;
	return dec_set_ctx_params(ctx, params);
}

/* tls_premaster finishes the TLS mode: out gets 48 bytes whatever the block held. */
static void tls_premaster(const struct dec_ctx *ctx, unsigned char *out, const uint8_t *block,
                          size_t len, const uint8_t rnd[KWP_TLS_PREMASTER_LEN])
{
	size_t k = (size_t)ctx->key->max_size;

	if (len == k &&
	    kwp_tls_depad(out, block, len, ctx->client_version, ctx->alt_version, rnd) == 0)
		return;
	/* An already unpadded answer: its length is public, its version bytes are not. */
	uint8_t em[KWP_TLS_PREMASTER_LEN + 11] = {0, 2, 1, 1, 1, 1, 1, 1, 1, 1, 0};
	if (len == KWP_TLS_PREMASTER_LEN) {
		memcpy(em + 11, block, len);
		(void)kwp_tls_depad(out, em, sizeof(em), ctx->client_version, ctx->alt_version,
		                    rnd);
		OPENSSL_cleanse(em, sizeof(em));
		return;
	}
	memcpy(out, rnd, KWP_TLS_PREMASTER_LEN);
}

/*
 * pkcs1_depad removes PKCS#1 v1.5 padding from the k-byte block. With a
 * local key (d in memory) bad padding yields the implicit-rejection
 * synthetic message, never an error; a keyserver key has no d, so the
 * constant-time depadding ends in one failure (docs/provider.md).
 */
static int pkcs1_depad(const struct dec_ctx *ctx, unsigned char *out, size_t outsize,
                       const uint8_t *block, const unsigned char *in, size_t inlen)
{
	size_t k = (size_t)ctx->key->max_size;
	uint8_t kdk[KWP_KDK_LEN];
	int n;

	if (ctx->key->local == NULL)
		return kwp_pkcs1_type2_depad(out, outsize, block, k);
	/*
	 * A local key whose d cannot be exported (held by another provider)
	 * gets what a keyserver key gets; that depends on the key, not on
	 * the ciphertext, so it tells an attacker nothing.
	 */
	ERR_set_mark();
	if (kwp_rsa_kdk(ctx->key->local, in, inlen, k, kdk) < 0) {
		ERR_pop_to_mark();
		return kwp_pkcs1_type2_depad(out, outsize, block, k);
	}
	ERR_clear_last_mark();
	n = kwp_pkcs1_implicit_rej(out, outsize, block, k, kdk);
	OPENSSL_cleanse(kdk, sizeof(kdk));
	return n;
}

static int dec_decrypt(void *vctx, unsigned char *out, size_t *outlen, size_t outsize,
                       const unsigned char *in, size_t inlen)
{
	struct dec_ctx *ctx = vctx;
	size_t k = (size_t)ctx->key->max_size;
	uint8_t rnd[KWP_TLS_PREMASTER_LEN];
	struct kwp_op *op = NULL;
	const uint8_t *block;
	size_t len = 0;
	uint8_t rerr = KW_ERR_NONE;
	int ok = 0;

	if (out == NULL) {
		*outlen = k;
		return 1;
	}
	if (inlen > k) {
		kwp_raise(ctx->prov, KWP_R_UNSUPPORTED, "ciphertext longer than the modulus");
		return 0;
	}
	if (ctx->pad == RSA_PKCS1_WITH_TLS_PADDING) {
		if (outsize < KWP_TLS_PREMASTER_LEN || ctx->client_version == 0) {
			kwp_raise(ctx->prov, KWP_R_INTERNAL,
			          "TLS premaster decryption needs a "
			          "48-byte buffer and the client version");
			return 0;
		}
		/* Drawn first, as OpenSSL does, so a failure can't depend on the block. */
		if (RAND_priv_bytes_ex(ctx->prov->libctx, rnd, sizeof(rnd), 0) != 1) {
			kwp_raise(ctx->prov, KWP_R_INTERNAL, "no random premaster");
			return 0;
		}
	}
	if (ctx->pad == RSA_PKCS1_WITH_TLS_PADDING)
		ERR_set_mark();
	if (kwp_key_op_ex(ctx->prov, ctx->key, KW_OP_RSA_DECRYPT, in, inlen, &op, &rerr) < 0) {
		/*
		 * A keyserver that depads itself (the C keyless server) answers
		 * bad padding with a crypto error: to libssl that is bad padding
		 * like any other, so the random premaster, not a failure.
		 */
		if (ctx->pad == RSA_PKCS1_WITH_TLS_PADDING && rerr == KW_ERR_CRYPTO) {
			ERR_pop_to_mark();
			memcpy(out, rnd, KWP_TLS_PREMASTER_LEN);
			*outlen = KWP_TLS_PREMASTER_LEN;
			ok = 1;
		} else if (ctx->pad == RSA_PKCS1_WITH_TLS_PADDING) {
			ERR_clear_last_mark();
		}
		goto out;
	}
	if (ctx->pad == RSA_PKCS1_WITH_TLS_PADDING)
		ERR_clear_last_mark();
	block = kwp_op_out(op, &len);

	switch (ctx->pad) {
	case RSA_PKCS1_WITH_TLS_PADDING:
		tls_premaster(ctx, out, block, len, rnd);
		*outlen = KWP_TLS_PREMASTER_LEN;
		ok = 1;
		break;
	case RSA_NO_PADDING:
		if (len != k || outsize < k) {
			kwp_raise(ctx->prov, len != k ? KWP_R_BAD_RESPONSE : KWP_R_BUFFER_TOO_SMALL,
			          "raw RSA block of %zu bytes for a %zu-byte modulus, buffer %zu",
			          len, k, outsize);
			break;
		}
		memcpy(out, block, k);
		*outlen = k;
		ok = 1;
		break;
	default: {
		int n = len == k ? pkcs1_depad(ctx, out, outsize, block, in, inlen) : -1;
		if (n < 0) {
			kwp_raise(ctx->prov, KWP_R_REMOTE_ERROR, "RSA decryption failed");
			break;
		}
		*outlen = (size_t)n;
		ok = 1;
	}
	}
out:
	OPENSSL_cleanse(rnd, sizeof(rnd));
	kwp_op_unref(op); /* wipes the block */
	return ok;
}

static int dec_set_ctx_params(void *vctx, const OSSL_PARAM params[])
{
	struct dec_ctx *ctx = vctx;
	const OSSL_PARAM *p;

	if (params == NULL)
		return 1;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL) {
		int pad = 0;
		if (p->data_type == OSSL_PARAM_UTF8_STRING) {
			if (strcmp(p->data, OSSL_PKEY_RSA_PAD_MODE_PKCSV15) == 0)
				pad = RSA_PKCS1_PADDING;
			else if (strcmp(p->data, OSSL_PKEY_RSA_PAD_MODE_NONE) == 0)
				pad = RSA_NO_PADDING;
		} else if (!OSSL_PARAM_get_int(p, &pad)) {
			return 0;
		}
		if (pad != RSA_PKCS1_PADDING && pad != RSA_NO_PADDING &&
		    pad != RSA_PKCS1_WITH_TLS_PADDING) {
			kwp_raise(ctx->prov, KWP_R_UNSUPPORTED,
			          "keyless RSA decryption supports PKCS#1 v1.5 (and the TLS "
			          "premaster form) and no padding, not OAEP");
			return 0;
		}
		ctx->pad = pad;
	}
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION)) !=
	        NULL &&
	    !OSSL_PARAM_get_uint(p, &ctx->client_version))
		return 0;
	if ((p = OSSL_PARAM_locate_const(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION)) !=
	        NULL &&
	    !OSSL_PARAM_get_uint(p, &ctx->alt_version))
		return 0;
	return 1;
}

static const OSSL_PARAM *dec_settable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_utf8_string(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL, 0),
	    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
	    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
	    OSSL_PARAM_END,
	};
	return p;
}

static int dec_get_ctx_params(void *vctx, OSSL_PARAM params[])
{
	struct dec_ctx *ctx = vctx;
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_PAD_MODE)) != NULL &&
	    p->data_type != OSSL_PARAM_UTF8_STRING && !OSSL_PARAM_set_int(p, ctx->pad))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION)) != NULL &&
	    !OSSL_PARAM_set_uint(p, ctx->client_version))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION)) !=
	        NULL &&
	    !OSSL_PARAM_set_uint(p, ctx->alt_version))
		return 0;
	return 1;
}

static const OSSL_PARAM *dec_gettable_ctx_params(void *vctx, void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_int(OSSL_ASYM_CIPHER_PARAM_PAD_MODE, NULL),
	    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_CLIENT_VERSION, NULL),
	    OSSL_PARAM_uint(OSSL_ASYM_CIPHER_PARAM_TLS_NEGOTIATED_VERSION, NULL),
	    OSSL_PARAM_END,
	};
	return p;
}

const OSSL_DISPATCH kwp_rsa_asym_cipher_functions[] = {
    {OSSL_FUNC_ASYM_CIPHER_NEWCTX, (void (*)(void))dec_newctx},
    {OSSL_FUNC_ASYM_CIPHER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_ASYM_CIPHER_DUPCTX, (void (*)(void))dec_dupctx},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT_INIT, (void (*)(void))dec_init},
    {OSSL_FUNC_ASYM_CIPHER_DECRYPT, (void (*)(void))dec_decrypt},
    {OSSL_FUNC_ASYM_CIPHER_SET_CTX_PARAMS, (void (*)(void))dec_set_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_SETTABLE_CTX_PARAMS, (void (*)(void))dec_settable_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_GET_CTX_PARAMS, (void (*)(void))dec_get_ctx_params},
    {OSSL_FUNC_ASYM_CIPHER_GETTABLE_CTX_PARAMS, (void (*)(void))dec_gettable_ctx_params},
    {0, NULL},
};
