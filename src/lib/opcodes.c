/* opcodes.c - the keyless key-operation table and its OpenSSL settings (see keyway/opcodes.h). */
#include "keyway/opcodes.h"

#include <errno.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rsa.h>

#include "keyway/err.h"
#include "keyway/protocol.h"

enum {
	SLOT_RSA_DECRYPT,
	SLOT_RSA_MD5SHA1,
	SLOT_RSA_SHA1,
	SLOT_RSA_SHA224,
	SLOT_RSA_SHA256,
	SLOT_RSA_SHA384,
	SLOT_RSA_SHA512,
	SLOT_PSS_SHA256,
	SLOT_PSS_SHA384,
	SLOT_PSS_SHA512,
	SLOT_EC = 0,
};

/*
 * Indexed by opcode. ECDSA gets no digest in its context: it signs the given
 * bytes (truncated to the order, as Go does), and OpenSSL would refuse
 * MD5-SHA1 there anyway. Length checks are ours, so all ECDSA opcodes share
 * one context.
 */
static const struct kw_opcode_desc table[256] = {
    [KW_OP_RSA_DECRYPT] = {KW_KEY_RSA, KW_ALG_RSA_DECRYPT, SLOT_RSA_DECRYPT, 0, NULL},
    [KW_OP_RSA_SIGN_MD5SHA1] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_MD5SHA1, 36, "MD5-SHA1"},
    [KW_OP_RSA_SIGN_SHA1] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_SHA1, 20, "SHA1"},
    [KW_OP_RSA_SIGN_SHA224] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_SHA224, 28, "SHA224"},
    [KW_OP_RSA_SIGN_SHA256] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_SHA256, 32, "SHA256"},
    [KW_OP_RSA_SIGN_SHA384] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_SHA384, 48, "SHA384"},
    [KW_OP_RSA_SIGN_SHA512] = {KW_KEY_RSA, KW_ALG_RSA_PKCS1, SLOT_RSA_SHA512, 64, "SHA512"},
    [KW_OP_RSA_PSS_SIGN_SHA256] = {KW_KEY_RSA, KW_ALG_RSA_PSS, SLOT_PSS_SHA256, 32, "SHA256"},
    [KW_OP_RSA_PSS_SIGN_SHA384] = {KW_KEY_RSA, KW_ALG_RSA_PSS, SLOT_PSS_SHA384, 48, "SHA384"},
    [KW_OP_RSA_PSS_SIGN_SHA512] = {KW_KEY_RSA, KW_ALG_RSA_PSS, SLOT_PSS_SHA512, 64, "SHA512"},
    [KW_OP_ECDSA_SIGN_MD5SHA1] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 36, NULL},
    [KW_OP_ECDSA_SIGN_SHA1] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 20, NULL},
    [KW_OP_ECDSA_SIGN_SHA224] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 28, NULL},
    [KW_OP_ECDSA_SIGN_SHA256] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 32, NULL},
    [KW_OP_ECDSA_SIGN_SHA384] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 48, NULL},
    [KW_OP_ECDSA_SIGN_SHA512] = {KW_KEY_EC, KW_ALG_ECDSA, SLOT_EC, 64, NULL},
    [KW_OP_ED25519_SIGN] = {KW_KEY_ED25519, KW_ALG_ED25519, 0, 0, NULL},
};

const struct kw_opcode_desc *kw_opcode_desc(uint8_t opcode)
{
	const struct kw_opcode_desc *d = &table[opcode];
	return d->key_type != 0 ? d : NULL;
}

bool kw_opcode_check(const struct kw_opcode_desc *d, int key_type, size_t in_len)
{
	return d != NULL && d->key_type == key_type && (d->hash_len == 0 || in_len == d->hash_len);
}

EVP_PKEY_CTX *kw_opcode_pctx_new(EVP_PKEY *pkey, const struct kw_opcode_desc *d)
{
	EVP_PKEY_CTX *ctx = NULL;
	const EVP_MD *md = NULL;
	bool ok = false;

	if (d->alg == KW_ALG_ED25519 ||
	    (ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL)) == NULL)
		return NULL;
	if (d->md != NULL && (md = EVP_get_digestbyname(d->md)) == NULL)
		goto out;
	switch (d->alg) {
	case KW_ALG_RSA_DECRYPT:
		ok = EVP_PKEY_decrypt_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1;
		break;
	case KW_ALG_RSA_PKCS1:
		ok = EVP_PKEY_sign_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1;
		break;
	case KW_ALG_RSA_PSS:
		ok = EVP_PKEY_sign_init(ctx) == 1 &&
		     EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
		break;
	case KW_ALG_ECDSA:
		ok = EVP_PKEY_sign_init(ctx) == 1;
		break;
	}
out:
	if (!ok) {
		EVP_PKEY_CTX_free(ctx);
		ctx = NULL;
	}
	return ctx;
}

int kw_opcode_pctx_run(EVP_PKEY_CTX *ctx, const struct kw_opcode_desc *d, EVP_PKEY *pkey,
                       uint8_t *out, size_t out_cap, size_t *out_len, const uint8_t *in,
                       size_t in_len)
{
	static const uint8_t zero[1];
	size_t len = out_cap;

	if (in == NULL)
		in = zero; /* OpenSSL wants a pointer even for an empty input */
	if (d->alg == KW_ALG_RSA_DECRYPT) {
		/*
		 * The ciphertext is an integer of at most k bytes (TLS sends
		 * exactly k); OpenSSL checks it is below n and, with no
		 * padding, returns c^d mod n as k bytes.
		 */
		size_t k = (size_t)EVP_PKEY_get_size(pkey);
		if (in_len > k || k > out_cap ||
		    EVP_PKEY_decrypt(ctx, out, &len, in, in_len) != 1 || len > k)
			return -KW_ECRYPTO;
		if (len < k) {
			memmove(out + (k - len), out, len);
			memset(out, 0, k - len);
		}
		*out_len = k;
		return 0;
	}
	if (EVP_PKEY_sign(ctx, out, &len, in, in_len) != 1)
		return -KW_ECRYPTO;
	*out_len = len;
	return 0;
}

int kw_ed25519_sign(struct kw_ed25519_signer *s, EVP_PKEY *pkey, uint8_t *out, size_t out_cap,
                    size_t *out_len, const uint8_t *in, size_t in_len)
{
	static const uint8_t empty[1];
	const uint8_t *m = in != NULL ? in : empty;
	size_t len = out_cap;

	if (s->mctx == NULL) {
		if ((s->mctx = EVP_MD_CTX_new()) == NULL)
			return -ENOMEM;
		if (EVP_DigestSignInit(s->mctx, NULL, NULL, NULL, pkey) != 1)
			goto fail;
	} else if (s->reinit) {
		if (EVP_DigestSignInit(s->mctx, NULL, NULL, NULL, pkey) != 1)
			goto fail;
	}
	if (EVP_DigestSign(s->mctx, out, &len, m, in_len) != 1) {
		if (s->reinit)
			goto fail;
		ERR_clear_error();
		s->reinit = true;
		len = out_cap;
		if (EVP_DigestSignInit(s->mctx, NULL, NULL, NULL, pkey) != 1 ||
		    EVP_DigestSign(s->mctx, out, &len, m, in_len) != 1)
			goto fail;
	}
	*out_len = len;
	return 0;
fail:
	/* A half-initialised context must not be reused. */
	kw_ed25519_signer_cleanup(s);
	return -KW_ECRYPTO;
}

void kw_ed25519_signer_cleanup(struct kw_ed25519_signer *s)
{
	EVP_MD_CTX_free(s->mctx);
	s->mctx = NULL;
}
