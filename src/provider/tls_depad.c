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

#include <openssl/crypto.h>

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

int kwp_pkcs1_type2_depad(uint8_t *out, size_t outsize, const uint8_t *em_in, size_t k)
{
	if (k < PKCS1_PAD_MIN || k > INT_MAX)
		return -1;
	uint8_t *em = malloc(k);
	if (em == NULL)
		return -1;
	memcpy(em, em_in, k);

	ct_mask good = ct_is_zero(em[0]) & ct_eq(em[1], 2);
	ct_mask found = 0;
	size_t zero_index = 0;
	for (size_t i = 2; i < k; i++) {
		ct_mask z = ct_is_zero(em[i]);
		zero_index = ct_select(~found & z, i, zero_index);
		found |= z;
	}
	good &= found;
	good &= ct_ge(zero_index, 2 + 8); /* PS of at least 8 bytes */
	size_t msg_index = zero_index + 1;
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
