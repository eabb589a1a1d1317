/*
 * provider.c - the keyway provider's entry point (kwp_prov_init: the
 * module's OSSL_provider_init, or a built-in provider's init function):
 * what it offers OpenSSL -- its algorithms, parameters and reason strings --
 * over a provider context (context.h).
 */
#include "provider.h"

#include <stdbool.h>

#include <openssl/core_dispatch.h>
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "algorithms.h"
#include "context.h"
#include "keyref.h"

#define KWP_VERSION "0.1.0"
#define PROPS "provider=keyway"

static const OSSL_ITEM reason_strings[] = {
    {KWP_R_CONFIG, "keyway provider configuration error"},
    {KWP_R_NOT_CONFIGURED, "no keyserver configured"},
    {KWP_R_BAD_URI, "malformed keyway URI"},
    {KWP_R_BAD_KEY_REF, "malformed KEYWAY KEY reference"},
    {KWP_R_SKI_MISMATCH, "SKI does not match the public key"},
    {KWP_R_UNSUPPORTED_KEY, "key type not supported by keyless"},
    {KWP_R_UNSUPPORTED, "operation not supported by the keyless protocol"},
    {KWP_R_UNREACHABLE, "keyserver unreachable"},
    {KWP_R_TLS, "TLS with the keyserver failed"},
    {KWP_R_TIMEOUT, "keyserver timeout"},
    {KWP_R_KEY_NOT_FOUND, "key not found on the keyserver"},
    {KWP_R_REMOTE_ERROR, "keyserver error"},
    {KWP_R_BAD_RESPONSE, "unexpected keyserver response"},
    {KWP_R_BUFFER_TOO_SMALL, "output buffer too small"},
    {KWP_R_INTERNAL, "keyway provider internal error"},
    {KWP_R_LOCAL, "local key operation failed"},
    {0, NULL},
};

/* ---- algorithms ---- */

static const OSSL_ALGORITHM keymgmts[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_keymgmt_functions, "RSA key held by a keyserver"},
    {KWP_NAMES_EC, PROPS, kwp_ec_keymgmt_functions, "EC key held by a keyserver"},
    {KWP_NAMES_ED25519, PROPS, kwp_ed25519_keymgmt_functions, "Ed25519 key held by a keyserver"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM stores[] = {
    {KWP_URI_SCHEME, PROPS, kwp_store_functions, "keyway:ski=...;cert=... key URIs"},
    {NULL, NULL, NULL, NULL},
};

#define DER_PROPS PROPS ",input=der,structure=" KWP_DER_STRUCTURE
static const OSSL_ALGORITHM decoders[] = {
    {"DER", PROPS ",input=pem", kwp_pem_decoder_functions, "KEYWAY KEY PEM block"},
    {KWP_NAMES_RSA, DER_PROPS, kwp_der_rsa_decoder_functions, "keyway RSA key reference"},
    {KWP_NAMES_EC, DER_PROPS, kwp_der_ec_decoder_functions, "keyway EC key reference"},
    {KWP_NAMES_ED25519, DER_PROPS, kwp_der_ed25519_decoder_functions,
     "keyway Ed25519 key reference"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM signatures[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_signature_functions, "RSA PKCS#1 v1.5 and PSS by keyserver"},
    {KWP_NAMES_ECDSA, PROPS, kwp_ecdsa_signature_functions, "ECDSA by keyserver"},
    {KWP_NAMES_ED25519, PROPS, kwp_ed25519_signature_functions, "Ed25519 by keyserver"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM asym_ciphers[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_asym_cipher_functions, "RSA decryption by keyserver"},
    {NULL, NULL, NULL, NULL},
};

struct order_scan {
	const struct kwp_prov *self;
	bool seen_self;
	int after_self;
};

static int order_cb(OSSL_PROVIDER *p, void *arg)
{
	struct order_scan *scan = arg;
	if (OSSL_PROVIDER_get0_provider_ctx(p) == scan->self)
		scan->seen_self = true;
	else if (scan->seen_self)
		scan->after_self++;
	return 1;
}

/*
 * keep_default_first makes sure the application's unqualified fetches of
 * "RSA" or "EC" key management (libssl's ECDHE key generation and its TLS
 * group list, EVP_PKEY_fromdata...) get OpenSSL's implementation, not our
 * opaque one. OpenSSL takes the first implementation registered, and
 * registers them in the order of its provider list, which is load order
 * ("-provider keyway -provider default") until the list gets sorted by name.
 * So on our first query, if we precede another provider, we have the list
 * sorted ("default" < "keyway"); and if that first query is itself a
 * key-management pass, which runs in the old order, we sit it out
 * (no_cache: we are asked again on the next pass, then after the others).
 * Returns true when this query's key management must be deferred.
 */
static bool keep_default_first(struct kwp_prov *prov, int operation_id)
{
	struct order_scan scan = {prov, false, 0};
	bool defer = false;

	pthread_mutex_lock(&prov->lock);
	if (!prov->order_checked && prov->have_parent) {
		prov->order_checked = true;
		(void)OSSL_PROVIDER_do_all(prov->parent, order_cb, &scan);
		if (scan.seen_self && scan.after_self > 0) {
			/* Any lookup by name sorts OpenSSL's provider list. */
			(void)OSSL_PROVIDER_available(prov->parent, prov->name);
			defer = operation_id == OSSL_OP_KEYMGMT;
		}
	}
	pthread_mutex_unlock(&prov->lock);
	return defer;
}

static const OSSL_ALGORITHM *query_operation(void *provctx, int operation_id, int *no_cache)
{
	*no_cache = 0;
	if (keep_default_first(provctx, operation_id)) {
		*no_cache = 1;
		return NULL;
	}
	switch (operation_id) {
	case OSSL_OP_KEYMGMT:
		return keymgmts;
	case OSSL_OP_STORE:
		return stores;
	case OSSL_OP_DECODER:
		return decoders;
	case OSSL_OP_SIGNATURE:
		return signatures;
	case OSSL_OP_ASYM_CIPHER:
		return asym_ciphers;
	}
	return NULL;
}

static const OSSL_PARAM *gettable_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
	    OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
	    OSSL_PARAM_END,
	};
	return p;
}

static int get_params(void *provctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "Keyway keyless provider"))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, KWP_VERSION))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "keyway " KWP_VERSION))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
	    !OSSL_PARAM_set_int(p, 1))
		return 0;
	return 1;
}

static const OSSL_ITEM *get_reason_strings(void *provctx)
{
	return reason_strings;
}

static void teardown(void *provctx)
{
	kwp_prov_free(provctx);
}

static const OSSL_DISPATCH prov_functions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query_operation},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))get_reason_strings},
    {0, NULL},
};

int kwp_prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                  const OSSL_DISPATCH **out, void **provctx)
{
	struct kwp_prov *prov;

	if (kwp_prov_new(handle, in, &prov) < 0)
		return 0;
	*out = prov_functions;
	*provctx = prov;
	return 1;
}
