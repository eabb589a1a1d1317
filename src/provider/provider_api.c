/*
 * provider_api.c - the keyway provider's functions for an application that
 * links it in (see keyway/provider_api.h).
 */
#include "keyway/provider_api.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "keyway/backend_keyless.h"
#include "keyway/err.h"
#include "context.h"
#include "keyref.h"
#include "provider.h"
#include "stats.h"

int kw_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx)
{
	return kwp_prov_init(handle, in, out, provctx);
}

static struct kwp_prov *prov_of(OSSL_PROVIDER *p)
{
	struct kwp_prov *prov = p != NULL ? OSSL_PROVIDER_get0_provider_ctx(p) : NULL;
	return prov != NULL && kwp_prov_is_live(prov) ? prov : NULL;
}

int kw_provider_is_external(OSSL_PROVIDER *p)
{
	struct kwp_prov *prov = prov_of(p);
	if (prov == NULL)
		return -EINVAL;
	return prov->settings.polling == KWP_POLLING_EXTERNAL;
}

int kw_provider_keyless_backend(OSSL_PROVIDER *p, struct kw_loop *loop, struct kw_backend **out,
                                char *err, size_t errlen)
{
	struct kwp_prov *prov = prov_of(p);
	SSL_CTX *ctx = NULL;
	int rc;

	*out = NULL;
	if (prov == NULL) {
		snprintf(err, errlen, "not the built-in keyway provider");
		return -EINVAL;
	}
	const struct kwp_settings *s = &prov->settings;
	if (s->error != NULL) {
		snprintf(err, errlen, "keyway provider configuration error: %s", s->error);
		return -KW_ECONFIG;
	}
	if (s->nservers == 0) {
		snprintf(err, errlen, "no keyserver configured (servers, or KEYWAY_SERVERS)");
		return -KW_ECONFIG;
	}
	if (kwp_settings_need_tls(s)) {
		/*
		 * One TLS context for every worker's connections. Built unlocked:
		 * building it queries the providers, us included (prov->lock).
		 */
		pthread_mutex_lock(&prov->lock);
		ctx = prov->ext_ssl_ctx;
		if (ctx != NULL)
			SSL_CTX_up_ref(ctx);
		pthread_mutex_unlock(&prov->lock);
		if (ctx == NULL) {
			if ((ctx = kwp_settings_ssl_ctx(s, prov->libctx, err, errlen)) == NULL)
				return -KW_ECONFIG;
			pthread_mutex_lock(&prov->lock);
			if (prov->ext_ssl_ctx == NULL) {
				SSL_CTX_up_ref(ctx);
				prov->ext_ssl_ctx = ctx;
			}
			pthread_mutex_unlock(&prov->lock);
		}
	}
	struct kw_keyless_config cfg;
	if (kwp_settings_keyless_config(s, prov->libctx, ctx, &kwp_stats.keyless, &cfg, err,
	                                errlen) < 0) {
		SSL_CTX_free(ctx);
		return -KW_ECONFIG;
	}
	rc = kw_backend_keyless_new(loop, &cfg, out);
	SSL_CTX_free(ctx);
	if (rc < 0)
		snprintf(err, errlen, "cannot make a keyless backend: %s", kw_strerror(rc));
	return rc;
}

int kw_provider_wrap_key(OSSL_LIB_CTX *libctx, EVP_PKEY *local, EVP_PKEY **out)
{
	int one = 1;
	const char *type = EVP_PKEY_is_a(local, "RSA")       ? "RSA"
	                   : EVP_PKEY_is_a(local, "EC")      ? "EC"
	                   : EVP_PKEY_is_a(local, "ED25519") ? "ED25519"
	                                                     : NULL;
	EVP_PKEY_CTX *ctx = NULL;
	int ok = 0;

	*out = NULL;
	if (type == NULL) {
		ERR_raise_data(ERR_LIB_USER, ERR_R_PASSED_INVALID_ARGUMENT,
		               "keyway wraps RSA, EC and Ed25519 keys only");
		return 0;
	}
	OSSL_PARAM params[] = {
	    OSSL_PARAM_int(KWP_PARAM_LOCAL_KEY, &one),
	    OSSL_PARAM_END,
	};
	/* The provider may sit out its very first key-management query (provider.c). */
	for (int i = 0; i < 2 && ctx == NULL; i++)
		ctx = EVP_PKEY_CTX_new_from_name(libctx, type, "provider=keyway");
	if (ctx != NULL) {
		ERR_clear_error();
		/* The import takes the key from this thread, not from params (keyref.h). */
		kwp_local_import_arm(local);
		ok = EVP_PKEY_fromdata_init(ctx) == 1 &&
		     EVP_PKEY_fromdata(ctx, out, EVP_PKEY_KEYPAIR, params) == 1;
		kwp_local_import_arm(NULL);
	}
	EVP_PKEY_CTX_free(ctx);
	return ok;
}
