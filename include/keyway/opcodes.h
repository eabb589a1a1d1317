/*
 * keyway/opcodes.h - what each keyless key opcode computes, shared by the
 * keyserver (keywayd) and the local offload backends (kw_op_compute), so the
 * two can never disagree on padding, digest or salt.
 *
 * The semantics are gokeyless': RSA PKCS#1 v1.5 signs a digest of the
 * opcode's hash (DigestInfo added here), PSS uses MGF1 with the same hash and
 * a salt as long as the hash, ECDSA signs the given bytes (DER signature),
 * Ed25519 signs the whole message, RSA decrypt (0x01) is the raw block
 * c^d mod n, left-padded to the modulus size.
 */
#ifndef KEYWAY_OPCODES_H
#define KEYWAY_OPCODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "keyway/keytype.h"

enum kw_opcode_alg {
	KW_ALG_RSA_DECRYPT,
	KW_ALG_RSA_PKCS1,
	KW_ALG_RSA_PSS,
	KW_ALG_ECDSA,
	KW_ALG_ED25519
};

/*
 * Slots of a per-key cache of initialised contexts: one per RSA opcode; every
 * ECDSA opcode shares slot 0 (the context carries no digest) and Ed25519
 * keeps an EVP_MD_CTX instead.
 */
#define KW_OPCODE_SLOTS 10

struct kw_opcode_desc {
	uint8_t key_type; /* enum kw_key_type; 0: not a key operation */
	uint8_t alg;      /* enum kw_opcode_alg */
	uint8_t slot;     /* context cache slot, < KW_OPCODE_SLOTS */
	uint8_t hash_len; /* required input length; 0 = any (Ed25519) or up to k (decrypt) */
	const char *md;   /* digest of the DigestInfo / PSS, NULL for none */
};

/* kw_opcode_desc returns the description of a key opcode, or NULL for anything else. */
const struct kw_opcode_desc *kw_opcode_desc(uint8_t opcode);

/*
 * kw_opcode_check tells whether in_len is a valid input for d on a key of
 * key_type (the keyserver answers KW_ERR_CRYPTO otherwise).
 */
bool kw_opcode_check(const struct kw_opcode_desc *d, int key_type, size_t in_len);

/*
 * kw_opcode_pctx_new makes a context for d on pkey, initialised once with
 * padding, digest and salt length so each use is a single
 * EVP_PKEY_sign/decrypt. NULL on failure (and for Ed25519, which has none).
 */
EVP_PKEY_CTX *kw_opcode_pctx_new(EVP_PKEY *pkey, const struct kw_opcode_desc *d);

/*
 * kw_opcode_pctx_run runs d with an initialised context on in, writing at
 * most out_cap bytes to out and the length to *out_len. For decryption the
 * result is exactly the modulus size. 0 or -KW_ECRYPTO (the OpenSSL error
 * queue is left to the caller).
 */
int kw_opcode_pctx_run(EVP_PKEY_CTX *ctx, const struct kw_opcode_desc *d, EVP_PKEY *pkey,
                       uint8_t *out, size_t out_cap, size_t *out_len, const uint8_t *in,
                       size_t in_len);

/*
 * An Ed25519 signer reusing one EVP_MD_CTX per key: OpenSSL 3.0 lets an
 * initialised context sign any number of messages, which saves a fetch per
 * signature; releases that refuse a second use make it re-initialise from
 * then on (reinit).
 */
struct kw_ed25519_signer {
	EVP_MD_CTX *mctx;
	bool reinit;
};

/* kw_ed25519_sign signs in with pkey into out (cap out_cap). 0 or -KW_ECRYPTO / -ENOMEM. */
int kw_ed25519_sign(struct kw_ed25519_signer *s, EVP_PKEY *pkey, uint8_t *out, size_t out_cap,
                    size_t *out_len, const uint8_t *in, size_t in_len);
void kw_ed25519_signer_cleanup(struct kw_ed25519_signer *s);

#endif
