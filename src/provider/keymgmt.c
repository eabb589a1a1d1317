/*
 * keymgmt.c - key management for opaque keyway keys (RSA, EC, Ed25519).
 *
 * Everything here is local: a key carries its public half, so loading,
 * matching, exporting the public key and answering bits, security bits,
 * maximum signature size and group name never contact a keyserver.
 *
 * Export refuses any selection that includes the private key. That is what
 * makes OpenSSL route signing and decryption to this provider: it first
 * tries to export the key to the provider of some other implementation,
 * and only when that fails uses ours. A public-only export (public key and
 * domain parameters) is what EVP_PKEY_eq needs, so certificates and keys
 * can be matched (SSL_CTX_use_PrivateKey, X509_check_private_key).
 */
#include <errno.h>
#include <string.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include "keyway/err.h"
#include "algorithms.h"
#include "context.h"
#include "keyref.h"

static void *key_load(const void *reference, size_t reference_sz, enum kw_key_type want)
{
	struct kwp_prov *prov = NULL;
	const unsigned char *der;
	size_t der_len;
	char err[256];
	int reason;

	if (kwp_ref_unblob(reference, reference_sz, &prov, &der, &der_len) < 0)
		return NULL; /* not one of ours: nothing to say to whom */
	struct kwp_key *k = kwp_key_from_ref(prov, der, der_len, &reason, err, sizeof(err));
	if (k == NULL) {
		kwp_raise(prov, reason, "%s", err);
	} else if (k->type != want) {
		kwp_raise(prov, KWP_R_BAD_KEY_REF, "a %s key where %s was expected",
		          kw_key_type_name(k->type), kw_key_type_name(want));
		kwp_key_unref(k);
		k = NULL;
	}
	return k;
}

static void *rsa_load(const void *reference, size_t reference_sz)
{
	return key_load(reference, reference_sz, KW_KEY_RSA);
}
static void *ec_load(const void *reference, size_t reference_sz)
{
	return key_load(reference, reference_sz, KW_KEY_EC);
}
static void *ed25519_load(const void *reference, size_t reference_sz)
{
	return key_load(reference, reference_sz, KW_KEY_ED25519);
}

/*
 * key_new and key_import exist so that OpenSSL, matching a certificate's
 * key against ours, can try to import it here and be told no quietly: a
 * missing NEW makes it leave a bogus "malloc failure" on the error queue,
 * which applications (nginx) then report. An empty key is good for
 * nothing else.
 */
static void *key_new(void *provctx, enum kw_key_type type)
{
	struct kwp_key *k = calloc(1, sizeof(*k));
	if (k != NULL) {
		atomic_init(&k->refs, 1);
		k->prov = provctx;
		k->type = type;
	}
	return k;
}

static void *rsa_new(void *provctx)
{
	return key_new(provctx, KW_KEY_RSA);
}
static void *ec_new(void *provctx)
{
	return key_new(provctx, KW_KEY_EC);
}
static void *ed25519_new(void *provctx)
{
	return key_new(provctx, KW_KEY_ED25519);
}

/* The local key kw_provider_wrap_key is wrapping on this thread (keyref.h). */
static _Thread_local EVP_PKEY *armed_local;

void kwp_local_import_arm(EVP_PKEY *pkey)
{
	armed_local = pkey;
}

/*
 * Keys come from a keyway: URI or a KEYWAY KEY reference, or wrap a local
 * key for an application that offloads it (kw_provider_wrap_key): nothing
 * else imports. The local key never travels in the parameters, which any
 * EVP_PKEY_fromdata caller controls: only the key armed by
 * kw_provider_wrap_key on this thread is taken, once.
 */
static int key_import(void *keydata, int selection, const OSSL_PARAM params[])
{
	struct kwp_key *k = keydata;
	const OSSL_PARAM *p = OSSL_PARAM_locate_const(params, KWP_PARAM_LOCAL_KEY);
	EVP_PKEY *pkey = armed_local;
	int flag = 0;
	char err[256];

	if (k == NULL || p == NULL || !OSSL_PARAM_get_int(p, &flag) || flag != 1)
		return 0;
	armed_local = NULL;
	if (pkey == NULL) {
		kwp_raise(k->prov, KWP_R_UNSUPPORTED_KEY,
		          "local keys are wrapped only through kw_provider_wrap_key");
		return 0;
	}
	if (kwp_key_set_local(k, pkey, err, sizeof(err)) < 0) {
		kwp_raise(k->prov, KWP_R_UNSUPPORTED_KEY, "cannot wrap the local key: %s", err);
		return 0;
	}
	return 1;
}

static const OSSL_PARAM *key_import_types(int selection)
{
	static const OSSL_PARAM none[] = {OSSL_PARAM_END};
	return none;
}

static void key_free(void *keydata)
{
	kwp_key_unref(keydata);
}

static void *key_dup(const void *keydata, int selection)
{
	struct kwp_key *k = (struct kwp_key *)keydata;
	/* Keys are immutable: a duplicate is another reference. */
	(void)kwp_key_ref(k);
	return k;
}

static int key_has(const void *keydata, int selection)
{
	const struct kwp_key *k = keydata;
	/* Public and domain parts are here; the private part is on the keyserver. */
	return k != NULL && (k->spki != NULL || (selection & OSSL_KEYMGMT_SELECT_ALL) == 0);
}

static int key_match(const void *a, const void *b, int selection)
{
	const struct kwp_key *k1 = a, *k2 = b;

	if (k1->type != k2->type || k1->spki == NULL || k2->spki == NULL)
		return 0;
	if (selection & OSSL_KEYMGMT_SELECT_KEYPAIR)
		return k1->spki_len == k2->spki_len &&
		       memcmp(k1->spki, k2->spki, k1->spki_len) == 0;
	if ((selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) && k1->type == KW_KEY_EC)
		return strcmp(k1->group, k2->group) == 0;
	return 1;
}

/* ---- parameters ---- */

static int push_public(OSSL_PARAM_BLD *bld, const struct kwp_key *k, int selection)
{
	if (k->type == KW_KEY_EC && (selection & OSSL_KEYMGMT_SELECT_DOMAIN_PARAMETERS) &&
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, k->group, 0))
		return 0;
	if (!(selection & OSSL_KEYMGMT_SELECT_PUBLIC_KEY))
		return 1;
	if (k->type == KW_KEY_RSA)
		return OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, k->n) &&
		       OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, k->e);
	return OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, k->pub, k->pub_len);
}

static int key_export(void *keydata, int selection, OSSL_CALLBACK *cb, void *cbarg)
{
	const struct kwp_key *k = keydata;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	int ok = 0;

	/* The private key never leaves the keyserver; see the top of the file. */
	if (k == NULL || k->spki == NULL || (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY))
		return 0;
	if ((bld = OSSL_PARAM_BLD_new()) == NULL || !push_public(bld, k, selection) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL)
		goto out;
	ok = cb(params, cbarg);
out:
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return ok;
}

static const OSSL_PARAM rsa_export_params[] = {
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
    OSSL_PARAM_END,
};
static const OSSL_PARAM ec_export_params[] = {
    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};
static const OSSL_PARAM ed25519_export_params[] = {
    OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),
    OSSL_PARAM_END,
};

static const OSSL_PARAM *rsa_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : rsa_export_params;
}
static const OSSL_PARAM *ec_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : ec_export_params;
}
static const OSSL_PARAM *ed25519_export_types(int selection)
{
	return (selection & OSSL_KEYMGMT_SELECT_PRIVATE_KEY) ? NULL : ed25519_export_params;
}

static int key_get_params(void *keydata, OSSL_PARAM params[])
{
	const struct kwp_key *k = keydata;
	OSSL_PARAM *p;

	if (k == NULL || k->spki == NULL)
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_BITS)) != NULL &&
	    !OSSL_PARAM_set_int(p, k->bits))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_SECURITY_BITS)) != NULL &&
	    !OSSL_PARAM_set_int(p, k->security_bits))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MAX_SIZE)) != NULL &&
	    !OSSL_PARAM_set_int(p, k->max_size))
		return 0;
	if (k->type == KW_KEY_ED25519) {
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_MANDATORY_DIGEST)) != NULL &&
		    !OSSL_PARAM_set_utf8_string(p, ""))
			return 0;
	} else if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_DEFAULT_DIGEST)) != NULL &&
	           !OSSL_PARAM_set_utf8_string(p, "SHA256")) {
		return 0;
	}
	if (k->type == KW_KEY_RSA) {
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_N)) != NULL &&
		    !OSSL_PARAM_set_BN(p, k->n))
			return 0;
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_RSA_E)) != NULL &&
		    !OSSL_PARAM_set_BN(p, k->e))
			return 0;
		return 1;
	}
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_PUB_KEY)) != NULL &&
	    !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY)) != NULL &&
	    !OSSL_PARAM_set_octet_string(p, k->pub, k->pub_len))
		return 0;
	if (k->type == KW_KEY_EC) {
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_GROUP_NAME)) != NULL &&
		    !OSSL_PARAM_set_utf8_string(p, k->group))
			return 0;
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT)) !=
		        NULL &&
		    !OSSL_PARAM_set_utf8_string(p, k->pub[0] == 4 ? "uncompressed" : "compressed"))
			return 0;
		if ((p = OSSL_PARAM_locate(params, OSSL_PKEY_PARAM_EC_ENCODING)) != NULL &&
		    !OSSL_PARAM_set_utf8_string(p, "named_curve"))
			return 0;
	}
	return 1;
}

/* clang-format off */
#define COMMON_GETTABLE                                              \
	OSSL_PARAM_int(OSSL_PKEY_PARAM_BITS, NULL),                  \
	OSSL_PARAM_int(OSSL_PKEY_PARAM_SECURITY_BITS, NULL),         \
	OSSL_PARAM_int(OSSL_PKEY_PARAM_MAX_SIZE, NULL)
#define PUBLIC_KEY_GETTABLE                                                  \
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_PUB_KEY, NULL, 0),           \
	OSSL_PARAM_octet_string(OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, NULL, 0)
/* clang-format on */

static const OSSL_PARAM *rsa_gettable_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    COMMON_GETTABLE,
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
	    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_N, NULL, 0),
	    OSSL_PARAM_BN(OSSL_PKEY_PARAM_RSA_E, NULL, 0),
	    OSSL_PARAM_END,
	};
	return p;
}

static const OSSL_PARAM *ec_gettable_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    COMMON_GETTABLE,
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_DEFAULT_DIGEST, NULL, 0),
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, NULL, 0),
	    PUBLIC_KEY_GETTABLE,
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, NULL, 0),
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_EC_ENCODING, NULL, 0),
	    OSSL_PARAM_END,
	};
	return p;
}

static const OSSL_PARAM *ed25519_gettable_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    COMMON_GETTABLE,
	    OSSL_PARAM_utf8_string(OSSL_PKEY_PARAM_MANDATORY_DIGEST, NULL, 0),
	    PUBLIC_KEY_GETTABLE,
	    OSSL_PARAM_END,
	};
	return p;
}

static const char *rsa_query_operation_name(int operation_id)
{
	return "RSA";
}
static const char *ec_query_operation_name(int operation_id)
{
	return operation_id == OSSL_OP_SIGNATURE ? KWP_NAMES_ECDSA : NULL;
}
static const char *ed25519_query_operation_name(int operation_id)
{
	return operation_id == OSSL_OP_SIGNATURE ? "ED25519" : NULL;
}

/* clang-format off */
#define KEYMGMT_FUNCTIONS(t)                                                                   \
	const OSSL_DISPATCH kwp_##t##_keymgmt_functions[] = {                                  \
		{OSSL_FUNC_KEYMGMT_NEW, (void (*)(void))t##_new},                              \
		{OSSL_FUNC_KEYMGMT_IMPORT, (void (*)(void))key_import},                        \
		{OSSL_FUNC_KEYMGMT_IMPORT_TYPES, (void (*)(void))key_import_types},            \
		{OSSL_FUNC_KEYMGMT_LOAD, (void (*)(void))t##_load},                           \
		{OSSL_FUNC_KEYMGMT_FREE, (void (*)(void))key_free},                            \
		{OSSL_FUNC_KEYMGMT_DUP, (void (*)(void))key_dup},                              \
		{OSSL_FUNC_KEYMGMT_HAS, (void (*)(void))key_has},                              \
		{OSSL_FUNC_KEYMGMT_MATCH, (void (*)(void))key_match},                          \
		{OSSL_FUNC_KEYMGMT_GET_PARAMS, (void (*)(void))key_get_params},                \
		{OSSL_FUNC_KEYMGMT_GETTABLE_PARAMS, (void (*)(void))t##_gettable_params},      \
		{OSSL_FUNC_KEYMGMT_EXPORT, (void (*)(void))key_export},                        \
		{OSSL_FUNC_KEYMGMT_EXPORT_TYPES, (void (*)(void))t##_export_types},            \
		{OSSL_FUNC_KEYMGMT_QUERY_OPERATION_NAME,                                       \
		 (void (*)(void))t##_query_operation_name},                                    \
		{0, NULL},                                                                     \
	}

KEYMGMT_FUNCTIONS(rsa);
KEYMGMT_FUNCTIONS(ec);
KEYMGMT_FUNCTIONS(ed25519);
/* clang-format on */
