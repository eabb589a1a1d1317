/*
 * provider.h - the keyway provider's entry point: its OSSL_provider_init
 * as keyway.so (module.c), or a built-in provider's init function
 * (kw_provider_init, keyway/provider_api.h).
 */
#ifndef KEYWAY_PROVIDER_H
#define KEYWAY_PROVIDER_H

#include <openssl/core.h>

/* kwp_prov_init is the provider's entry point (OSSL_provider_init of keyway.so). */
int kwp_prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                  const OSSL_DISPATCH **out, void **provctx);

#endif
