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

#define KWP_TLS_PREMASTER_LEN 48

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
 * fit; out may be written either way. Only the result is not constant
 * time (callers needing Bleichenbacher safety use kwp_tls_depad).
 */
int kwp_pkcs1_type2_depad(uint8_t *out, size_t outsize, const uint8_t *em, size_t k);

#endif
