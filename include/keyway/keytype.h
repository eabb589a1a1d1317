/*
 * keyway/keytype.h - the kinds of private key Keyway serves, one enum for
 * the keyserver, the local backends and the provider.
 */
#ifndef KEYWAY_KEYTYPE_H
#define KEYWAY_KEYTYPE_H

#include <openssl/evp.h>

/* Key types; 0 is "none" (e.g. an opcode that uses no key). */
enum kw_key_type { KW_KEY_RSA = 1, KW_KEY_EC, KW_KEY_ED25519 };

/*
 * kw_key_type_of classifies pkey: KW_KEY_*, or 0 for NULL or a type keyless
 * does not serve. It checks no size or curve.
 */
int kw_key_type_of(const EVP_PKEY *pkey);

/* kw_key_type_name returns "RSA", "EC", "ED25519", or "?" for anything else. */
const char *kw_key_type_name(int type);

#endif
