/*
 * tls_depad.h - constant-time removal of PKCS#1 v1.5 type 2 padding from a
 * raw RSA block (the keyserver returns c^d mod n, padding included).
 *
 * Neither function branches on, or indexes memory by, any byte of the
 * block; only the public lengths shape the loops.
 */
#ifndef KEYWAY_PROVIDER_TLS_DEPAD_H
#define KEYWAY_PROVIDER_TLS_DEPAD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#define KWP_TLS_PREMASTER_LEN 48
#define KWP_KDK_LEN 32 /* SHA-256 */

/*
 * kwp_tls_depad implements RFC 5246 §7.4.7.1 for the TLS 1.2 RSA key
 * exchange: em is the k-byte block 00 02 PS 00 M. When PS is at least 8
 * nonzero bytes, M is exactly 48 bytes and M starts with client_version
 * (or alt_version, if nonzero) as two bytes, out receives M; otherwise out
 * receives random_pms, which the caller drew before the decryption. The
 * choice is made in constant time and out is always 48 bytes.
 * Returns 0, or -EINVAL when k < 59 (a public length; out untouched).
 */
int kwp_tls_depad(uint8_t out[KWP_TLS_PREMASTER_LEN], const uint8_t *em, size_t k,
                  unsigned client_version, unsigned alt_version,
                  const uint8_t random_pms[KWP_TLS_PREMASTER_LEN]);

/*
 * kwp_pkcs1_type2_depad strips PKCS#1 v1.5 type 2 padding (RFC 8017
 * §7.2.2) from the k-byte block em into out (outsize bytes). Returns the
 * message length, or -1 when the padding is bad or the message does not
 * fit; out may be written either way. Every path runs the same loops and
 * ends in the one verdict; only that result is observable (TLS callers use
 * kwp_tls_depad, callers holding d use kwp_pkcs1_implicit_rej).
 */
int kwp_pkcs1_type2_depad(uint8_t *out, size_t outsize, const uint8_t *em, size_t k);

/*
 * kwp_rsa_kdk derives the implicit-rejection key of draft-irtf-cfrg-rsa-
 * guidance (as OpenSSL 3.2): HMAC-SHA256 keyed on SHA-256 of the private
 * exponent d (k big-endian bytes) over the ciphertext left-padded to k
 * bytes. pkey must hold d (a local key). Returns 0, or -1.
 */
int kwp_rsa_kdk(EVP_PKEY *pkey, const uint8_t *ct, size_t ctlen, size_t k,
                uint8_t kdk[KWP_KDK_LEN]);

/*
 * kwp_pkcs1_implicit_rej strips PKCS#1 v1.5 type 2 padding like
 * kwp_pkcs1_type2_depad, but on bad padding (or a message longer than
 * outsize) writes the synthetic message the PRF keyed on kdk selects, so
 * good and bad padding look alike. The selection is constant time. Returns
 * the length written (at most outsize), or -1 only on a public failure
 * (k outside 11..8191, out of memory, HMAC error).
 */
int kwp_pkcs1_implicit_rej(uint8_t *out, size_t outsize, const uint8_t *em, size_t k,
                           const uint8_t kdk[KWP_KDK_LEN]);

#endif
