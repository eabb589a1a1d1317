/*
 * keyway/keyref.h - naming a key held by keyservers, for tools that hand
 * such keys to OpenSSL applications (keyway ref).
 *
 * A keyway key is named by a URI, "keyway:ski=<40 hex>;cert=<absolute
 * path>" (the key's SKI, keyway/keyid.h, and a certificate or public key
 * file holding its public half), which the keyway provider's store opens;
 * or by a "KEYWAY KEY" PEM block carrying the URI and the public key, which
 * the provider's decoders read wherever an application reads a PEM private
 * key file (nginx, HAProxy). Implemented by the provider (provider_core).
 */
#ifndef KEYWAY_KEYREF_H
#define KEYWAY_KEYREF_H

#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/protocol.h"

/*
 * kw_keyref_uri returns the canonical keyway: URI naming the key with SKI
 * ski whose public half is in the file cert_path (absolute; ';', '%' and
 * control characters are %XX-escaped). The caller frees it; NULL when out
 * of memory.
 */
char *kw_keyref_uri(const uint8_t ski[KW_SKI_LEN], const char *cert_path);

/*
 * kw_keyref_pem makes *pem, the "KEYWAY KEY" PEM block (NUL-terminated; the
 * caller frees it) that names the key uri and carries its public key pub
 * (not checked against the URI's SKI: pass the key it names). 0, or
 * -KW_ECRYPTO (pub cannot be encoded) or -ENOMEM with *pem NULL.
 */
int kw_keyref_pem(const char *uri, const EVP_PKEY *pub, char **pem);

#endif
