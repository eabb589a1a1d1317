/* tlsctx.h - the proxy's server TLS context (see tlsctx.c). */
#ifndef KPX_TLSCTX_H
#define KPX_TLSCTX_H

#include <stddef.h>

#include <openssl/ssl.h>

#include "proxy.h"

/*
 * kpx_tls_ctx builds the server context for o (the key as kpx_load_key makes it); the key is
 * returned in *key_out for the caller to free after the context. NULL with
 * the reason (file and OpenSSL's words) in err.
 */
SSL_CTX *kpx_tls_ctx(const struct kpx_options *o, EVP_PKEY **key_out, char *err, size_t errlen);

#endif
