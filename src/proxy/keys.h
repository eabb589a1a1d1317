/* keys.h - what --key names, and the built-in keyway provider (see keys.c). */
#ifndef KPX_KEYS_H
#define KPX_KEYS_H

#include <stddef.h>

#include <openssl/evp.h>

#include "proxy.h"

enum kpx_key_kind { KPX_KEY_LOCAL, KPX_KEY_KEYWAY };

/* kpx_key_kind tells a keyway: URI or KEYWAY KEY reference PEM from a local private key. */
enum kpx_key_kind kpx_key_kind(const char *key);

/*
 * kpx_check_key_modes refuses private-key files readable by group or others
 * (each local --key, and --client-key or KEYWAY_CLIENT_KEY) unless
 * --allow-group-readable-keys: 0, or -KW_ECONFIG with the file and the fix
 * in err. References, URIs and certificates are public and not checked.
 */
int kpx_check_key_modes(const struct kpx_options *o, char *err, size_t errlen);

/*
 * kpx_provider_start registers and loads the built-in keyway provider
 * (polling = external) with o's keyserver settings, and for --backend
 * keyless checks them. 0, or with the reason and fix in err -EINVAL (no
 * keyserver configured) or -KW_ECONFIG (a setting or file is bad).
 */
int kpx_provider_start(struct kpx_options *o, char *err, size_t errlen);

/* kpx_provider_stop unloads what kpx_provider_start loaded (after every key is freed). */
void kpx_provider_stop(struct kpx_options *o);

/*
 * kpx_load_key loads the key `name` (a --key value): a keyway key for a URI
 * or reference PEM; a local key plain, or wrapped for --backend threads.
 * NULL with the file and OpenSSL's words in err.
 */
EVP_PKEY *kpx_load_key(const struct kpx_options *o, const char *name, char *err, size_t errlen);

#endif
