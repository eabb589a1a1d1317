/*
 * keyway/keyid.h - key identifiers as gokeyless computes them.
 *
 * SKI: SHA-1 over the contents of the subjectPublicKey BIT STRING of the
 * key's SubjectPublicKeyInfo (computed from the key, never read from a
 * certificate extension). Digest (RSA only): SHA-256 of the upper-case hex
 * of the modulus, without leading zeros.
 */
#ifndef KEYWAY_KEYID_H
#define KEYWAY_KEYID_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/protocol.h"

/* kw_key_ski computes the SKI of any key (public part used); 0 or -KW_ECRYPTO. */
int kw_key_ski(const EVP_PKEY *key, uint8_t out[KW_SKI_LEN]);
/* kw_key_digest computes the RSA modulus digest; -EINVAL for non-RSA keys. */
int kw_key_digest(const EVP_PKEY *key, uint8_t out[KW_DIGEST_LEN]);

/*
 * kw_load_public_key reads a PEM or DER certificate, public key or private
 * key from path and returns its public key (the caller frees it). A private
 * key is reduced to its public part and wiped. Errors: -ENOENT/-EACCES...
 * (file), -KW_ECRYPTO (not a key or certificate).
 */
int kw_load_public_key(const char *path, EVP_PKEY **out);

/* kw_hex writes 2*n lowercase hex digits and a NUL into out. */
void kw_hex(char *out, const uint8_t *p, size_t n);
/* kw_unhex parses exactly 2*n hex digits (either case); 0 or -EINVAL. */
int kw_unhex(uint8_t *out, size_t n, const char *hex);

#endif
