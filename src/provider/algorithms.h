/*
 * algorithms.h - the provider's algorithm tables, one file per OpenSSL
 * operation (keymgmt.c, store.c, decoder.c, signature.c, asym_cipher.c),
 * offered by provider.c's query_operation.
 */
#ifndef KEYWAY_PROVIDER_ALGORITHMS_H
#define KEYWAY_PROVIDER_ALGORITHMS_H

#include <openssl/core.h>

extern const OSSL_DISPATCH kwp_rsa_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ec_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_ed25519_keymgmt_functions[];
extern const OSSL_DISPATCH kwp_store_functions[];
extern const OSSL_DISPATCH kwp_pem_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_rsa_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_ec_decoder_functions[];
extern const OSSL_DISPATCH kwp_der_ed25519_decoder_functions[];
extern const OSSL_DISPATCH kwp_rsa_signature_functions[];
extern const OSSL_DISPATCH kwp_ecdsa_signature_functions[];
extern const OSSL_DISPATCH kwp_ed25519_signature_functions[];
extern const OSSL_DISPATCH kwp_rsa_asym_cipher_functions[];

/* Algorithm names, as OpenSSL's own so libssl recognises the key types. */
#define KWP_NAMES_RSA "RSA:rsaEncryption:1.2.840.113549.1.1.1"
#define KWP_NAMES_EC "EC:id-ecPublicKey:1.2.840.10045.2.1"
#define KWP_NAMES_ED25519 "ED25519:1.3.101.112"
#define KWP_NAMES_ECDSA "ECDSA"
/* The DER structure name between our PEM decoder and our key decoders. */
#define KWP_DER_STRUCTURE "keyway"

#endif
