/*
 * tls_depad.c - constant-time PKCS#1 v1.5 type 2 depadding (see tls_depad.h).
 *
 * Secret-dependent decisions are all-ones/all-zero masks combined with
 * bitwise operations; ct_barrier hides the mask's value from the optimiser
 * so it cannot turn a select back into a branch.
 */
#include "tls_depad.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define PKCS1_PAD_MIN 11 /* 00 02, at least 8 bytes of PS, 00 */

typedef size_t ct_mask; /* all ones or all zeros */

static inline ct_mask ct_barrier(ct_mask a)
{
	__asm__("" : "+r"(a));
	return a;
}

/* ct_msb spreads the top bit of a over the whole word. */
static inline ct_mask ct_msb(size_t a)
{
	return ct_barrier((ct_mask)0 - (a >> (sizeof(a) * CHAR_BIT - 1)));
}

static inline ct_mask ct_is_zero(size_t a)
{
	return ct_msb(~a & (a - 1));
}

static inline ct_mask ct_eq(size_t a, size_t b)
{
	return ct_is_zero(a ^ b);
}

/* ct_lt is all ones when a < b (unsigned). */
static inline ct_mask ct_lt(size_t a, size_t b)
{
	return ct_msb(a ^ ((a ^ b) | ((a - b) ^ b)));
}

static inline ct_mask ct_ge(size_t a, size_t b)
{
	return ~ct_lt(a, b);
}

static inline size_t ct_select(ct_mask m, size_t a, size_t b)
{
	return (m & a) | (~m & b);
}

static inline uint8_t ct_select_8(ct_mask m, uint8_t a, uint8_t b)
{
	return (uint8_t)((m & a) | (~m & b));
}

int kwp_tls_depad(uint8_t out[KWP_TLS_PREMASTER_LEN], const uint8_t *em, size_t k,
                  unsigned client_version, unsigned alt_version,
                  const uint8_t random_pms[KWP_TLS_PREMASTER_LEN])
{
	const size_t m = KWP_TLS_PREMASTER_LEN;

	if (k < m + PKCS1_PAD_MIN)
		return -EINVAL;
	ct_mask good = ct_is_zero(em[0]) & ct_eq(em[1], 2);
	/* PS: every byte nonzero up to the separator, which must sit right before M. */
	for (size_t i = 2; i < k - m - 1; i++)
		good &= ~ct_is_zero(em[i]);
	good &= ct_is_zero(em[k - m - 1]);

	ct_mask version_good = ct_eq(em[k - m], (client_version >> 8) & 0xff) &
	                       ct_eq(em[k - m + 1], client_version & 0xff);
	/* alt_version is configuration (SSL_OP_TLS_ROLLBACK_BUG), not a secret. */
	if (alt_version != 0)
		version_good |= ct_eq(em[k - m], (alt_version >> 8) & 0xff) &
		                ct_eq(em[k - m + 1], alt_version & 0xff);
	good &= version_good;

	for (size_t i = 0; i < m; i++)
		out[i] = ct_select_8(good, em[k - m + i], random_pms[i]);
	return 0;
}

/*
 * type2_split checks a PKCS#1 v1.5 type 2 block in constant time: 00 02, at
 * least 8 non-zero padding bytes, a zero separator. Whatever the verdict (the
 * returned mask), *msg_index is where the message would start.
 */
static ct_mask type2_split(const uint8_t *em, size_t k, size_t *msg_index)
{
	ct_mask good = ct_is_zero(em[0]) & ct_eq(em[1], 2);
	ct_mask found = 0;
	size_t zero_index = 0;
	for (size_t i = 2; i < k; i++) {
		ct_mask z = ct_is_zero(em[i]);
		zero_index = ct_select(~found & z, i, zero_index);
		found |= z;
	}
	*msg_index = zero_index + 1;
	return good & found & ct_ge(zero_index, 2 + 8); /* PS of at least 8 bytes */
}

int kwp_pkcs1_type2_depad(uint8_t *out, size_t outsize, const uint8_t *em_in, size_t k)
{
	if (k < PKCS1_PAD_MIN || k > INT_MAX)
		return -1;
	uint8_t *em = malloc(k);
	if (em == NULL)
		return -1;
	memcpy(em, em_in, k);

	size_t msg_index;
	ct_mask good = type2_split(em, k, &msg_index);
	size_t mlen = k - msg_index;
	good &= ct_ge(outsize, mlen);

	/*
	 * Move the message to em[PKCS1_PAD_MIN] by a shift of secret size,
	 * done as log2(k) passes over the whole buffer, one per bit of it.
	 */
	size_t max_mlen = k - PKCS1_PAD_MIN;
	size_t shift = ct_select(good, msg_index - PKCS1_PAD_MIN, 0);
	for (size_t step = 1; step < max_mlen; step <<= 1) {
		ct_mask take = ~ct_is_zero(shift & step);
		for (size_t i = PKCS1_PAD_MIN; i < k - step; i++)
			em[i] = ct_select_8(take, em[i + step], em[i]);
	}
	size_t n = outsize < max_mlen ? outsize : max_mlen;
	for (size_t i = 0; i < n; i++) {
		ct_mask in_msg = good & ct_lt(i, mlen);
		out[i] = ct_select_8(in_msg, em[PKCS1_PAD_MIN + i], out[i]);
	}
	OPENSSL_cleanse(em, k);
	free(em);
	/* The verdict itself is the result: this is the only branch on it. */
	return good ? (int)mlen : -1;
}

/*
 * Implicit rejection (draft-irtf-cfrg-rsa-guidance, as OpenSSL 3.2): on bad
 * padding the caller gets a synthetic message from a PRF keyed on the
 * private key and the ciphertext instead of an error, so an attacker sees
 * no difference between good and bad padding. Hashing is OpenSSL's.
 */
#define IR_LEN_TRIES 128 /* 16-bit length candidates drawn from the PRF */

int kwp_rsa_kdk(EVP_PKEY *pkey, const uint8_t *ct, size_t ctlen, size_t k, uint8_t kdk[KWP_KDK_LEN])
{
	BIGNUM *d = NULL;
	uint8_t *buf = NULL, dhash[KWP_KDK_LEN];
	unsigned int hlen = KWP_KDK_LEN;
	int rc = -1;

	if (ctlen > k || k == 0 || !EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_D, &d))
		goto out;
	if ((buf = calloc(1, k)) == NULL || BN_bn2binpad(d, buf, (int)k) != (int)k)
		goto out;
	if (EVP_Digest(buf, k, dhash, NULL, EVP_sha256(), NULL) != 1)
		goto out;
	/* The ciphertext as a k-byte integer: left zero padding first. */
	memset(buf, 0, k - ctlen);
	memcpy(buf + (k - ctlen), ct, ctlen);
	if (HMAC(EVP_sha256(), dhash, KWP_KDK_LEN, buf, k, kdk, &hlen) == NULL)
		goto out;
	rc = 0;
out:
	OPENSSL_cleanse(dhash, sizeof(dhash));
	if (buf != NULL)
		OPENSSL_clear_free(buf, k);
	BN_clear_free(d);
	return rc;
}

/* ir_prf fills to[0..tlen) with HMAC-SHA256(kdk, be16(i) || label || be16(tlen*8)). */
static int ir_prf(uint8_t *to, size_t tlen, const char *label, const uint8_t kdk[KWP_KDK_LEN])
{
	uint8_t msg[2 + 16 + 2], mac[KWP_KDK_LEN];
	size_t llen = strlen(label), bits = tlen * 8;
	unsigned int mlen;

	if (llen > 16 || bits > 0xffff)
		return -1;
	memcpy(msg + 2, label, llen);
	msg[2 + llen] = (uint8_t)(bits >> 8);
	msg[3 + llen] = (uint8_t)bits;
	for (size_t pos = 0, iter = 0; pos < tlen; pos += sizeof(mac), iter++) {
		msg[0] = (uint8_t)(iter >> 8);
		msg[1] = (uint8_t)iter;
		mlen = sizeof(mac);
		if (HMAC(EVP_sha256(), kdk, KWP_KDK_LEN, msg, llen + 4, mac, &mlen) == NULL)
			return -1;
		memcpy(to + pos, mac, tlen - pos < sizeof(mac) ? tlen - pos : sizeof(mac));
	}
	OPENSSL_cleanse(mac, sizeof(mac));
	return 0;
}

int kwp_pkcs1_implicit_rej(uint8_t *out, size_t outsize, const uint8_t *em, size_t k,
                           const uint8_t kdk[KWP_KDK_LEN])
{
	uint8_t lens[IR_LEN_TRIES * 2], *synth;
	int rc = -1;

	if (k < PKCS1_PAD_MIN || k > 0x1fff || (synth = malloc(k)) == NULL)
		return -1;
	if (ir_prf(synth, k, "message", kdk) < 0 || ir_prf(lens, sizeof(lens), "length", kdk) < 0)
		goto out;
	/* The synthetic length: the last candidate below the largest message. */
	size_t max_sep = k - 2 - 8, len_mask = max_sep, synth_len = 0;
	len_mask |= len_mask >> 1;
	len_mask |= len_mask >> 2;
	len_mask |= len_mask >> 4;
	len_mask |= len_mask >> 8;
	for (size_t i = 0; i < sizeof(lens); i += 2) {
		size_t cand = (((size_t)lens[i] << 8) | lens[i + 1]) & len_mask;
		synth_len = ct_select(ct_lt(cand, max_sep), cand, synth_len);
	}

	size_t msg_index;
	ct_mask good = type2_split(em, k, &msg_index);
	good &= ct_ge(outsize, k - msg_index);
	/*
	 * Which message is returned no longer reveals the verdict, so its
	 * length may shape the loop; both buffers are read on every byte.
	 */
	msg_index = ct_select(good, msg_index, k - synth_len);
	size_t j = 0;
	for (size_t i = msg_index; i < k && j < outsize; i++, j++)
		out[j] = ct_select_8(good, em[i], synth[i]);
	rc = (int)j;
out:
	OPENSSL_cleanse(lens, sizeof(lens));
	OPENSSL_clear_free(synth, k);
	return rc;
}
