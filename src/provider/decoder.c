/*
 * decoder.c - reading "KEYWAY KEY" PEM blocks, for applications that only
 * read PEM files (nginx, HAProxy: PEM_read_bio_PrivateKey), and for
 * openssl's file: loader.
 *
 * Two steps, as OpenSSL's own decoders chain:
 *   PEM -> DER    finds the first KEYWAY KEY block in the input, skipping
 *                 the blocks before it (a certificate above the key in a
 *                 combined file), and passes its DER on, structure "keyway";
 *   DER -> key    one decoder per key type checks the reference and hands
 *                 our keymgmt a reference to load.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/core_object.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/params.h>
#include <openssl/pem.h>

#include "algorithms.h"
#include "context.h"
#include "keyref.h"

#define MAX_BLOCKS 64 /* PEM blocks skipped before giving up */
#define MAX_REF_LEN 65536

static void *dec_newctx(void *provctx)
{
	return provctx; /* no per-decode state */
}

static void dec_freectx(void *ctx)
{
}

static int pem_decode(void *ctx, OSSL_CORE_BIO *cin, int selection, OSSL_CALLBACK *object_cb,
                      void *object_cbarg, OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)
{
	struct kwp_prov *prov = ctx;
	BIO *bio = BIO_new_from_core_bio(prov->libctx, cin);
	int ret = 1; /* "not mine, carry on" unless the callback says otherwise */

	if (bio == NULL)
		return 1;
	ERR_set_mark();
	for (int i = 0; i < MAX_BLOCKS; i++) {
		char *name = NULL, *header = NULL;
		unsigned char *data = NULL;
		long len = 0;

		if (PEM_read_bio(bio, &name, &header, &data, &len) <= 0)
			break;
		int mine = strcmp(name, KWP_PEM_LABEL) == 0;
		if (mine) {
			OSSL_PARAM params[3] = {
			    OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_DATA, data,
			                                      (size_t)len),
			    OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_STRUCTURE,
			                                     (char *)KWP_DER_STRUCTURE, 0),
			    OSSL_PARAM_construct_end(),
			};
			ERR_pop_to_mark();
			ERR_set_mark();
			ret = object_cb(params, object_cbarg);
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
		if (mine)
			break;
	}
	ERR_pop_to_mark(); /* "no start line" at the end of the input is not news */
	BIO_free(bio);
	return ret;
}

/* read_all reads the whole (DER) input; NULL when it is empty or too large. */
static unsigned char *read_all(struct kwp_prov *prov, OSSL_CORE_BIO *cin, size_t *len)
{
	unsigned char *buf = OPENSSL_malloc(MAX_REF_LEN + 1);
	size_t n = 0, got = 0;

	if (buf == NULL)
		return NULL;
	while (n <= MAX_REF_LEN && prov->c_bio_read_ex(cin, buf + n, MAX_REF_LEN + 1 - n, &got) &&
	       got > 0)
		n += got;
	if (n == 0 || n > MAX_REF_LEN) {
		OPENSSL_free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

static int der_decode(struct kwp_prov *prov, enum kw_key_type want, OSSL_CORE_BIO *cin,
                      OSSL_CALLBACK *object_cb, void *object_cbarg)
{
	unsigned char *der, *blob = NULL;
	size_t der_len = 0, blob_len = 0;
	int object_type = OSSL_OBJECT_PKEY, ret = 1;

	if ((der = read_all(prov, cin, &der_len)) == NULL)
		return 1;
	int type = kwp_ref_type(der, der_len);
	if (type == (int)want && kwp_ref_blob(prov, der, der_len, &blob, &blob_len) == 0) {
		OSSL_PARAM params[4] = {
		    OSSL_PARAM_construct_int(OSSL_OBJECT_PARAM_TYPE, &object_type),
		    OSSL_PARAM_construct_utf8_string(OSSL_OBJECT_PARAM_DATA_TYPE,
		                                     (char *)kw_key_type_name(want), 0),
		    OSSL_PARAM_construct_octet_string(OSSL_OBJECT_PARAM_REFERENCE, blob, blob_len),
		    OSSL_PARAM_construct_end(),
		};
		ret = object_cb(params, object_cbarg);
	}
	OPENSSL_free(blob);
	OPENSSL_free(der);
	return ret;
}

/*
 * export_object declines: the private key cannot leave the keyserver. It
 * must exist, as OpenSSL 3.0 calls it without checking when another
 * provider's key management is picked for our reference.
 */
static int dec_export_object(void *ctx, const void *objref, size_t objref_sz,
                             OSSL_CALLBACK *export_cb, void *export_cbarg)
{
	return 0;
}

/* clang-format off */
#define DER_DECODER(t, TYPE)                                                                 \
	static int t##_der_decode(void *ctx, OSSL_CORE_BIO *cin, int selection,              \
				  OSSL_CALLBACK *object_cb, void *object_cbarg,              \
				  OSSL_PASSPHRASE_CALLBACK *pw_cb, void *pw_cbarg)           \
	{                                                                                    \
		return der_decode(ctx, TYPE, cin, object_cb, object_cbarg);                  \
	}                                                                                    \
	const OSSL_DISPATCH kwp_der_##t##_decoder_functions[] = {                            \
		{OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx},                      \
		{OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},                    \
		{OSSL_FUNC_DECODER_DECODE, (void (*)(void))t##_der_decode},                  \
		{OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},        \
		{0, NULL},                                                                   \
	}

DER_DECODER(rsa, KW_KEY_RSA);
DER_DECODER(ec, KW_KEY_EC);
DER_DECODER(ed25519, KW_KEY_ED25519);
/* clang-format on */

const OSSL_DISPATCH kwp_pem_decoder_functions[] = {
    {OSSL_FUNC_DECODER_NEWCTX, (void (*)(void))dec_newctx},
    {OSSL_FUNC_DECODER_FREECTX, (void (*)(void))dec_freectx},
    {OSSL_FUNC_DECODER_DECODE, (void (*)(void))pem_decode},
    {OSSL_FUNC_DECODER_EXPORT_OBJECT, (void (*)(void))dec_export_object},
    {0, NULL},
};
