/*
 * module.c - the entry point of keyway.so, the provider module OpenSSL
 * loads from disk; its only exported symbol. A program that links the
 * provider in registers kw_provider_init instead (keyway/provider_api.h).
 */
#include "context.h"
#include "provider.h"

__attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE *handle,
                                                              const OSSL_DISPATCH *in,
                                                              const OSSL_DISPATCH **out,
                                                              void **provctx);

int OSSL_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                       const OSSL_DISPATCH **out, void **provctx)
{
	kwp_is_module = true;
	return kwp_prov_init(handle, in, out, provctx);
}
