/*
 * fuzz_depad.c - differential harness for PKCS#1 v1.5 type 2 depadding.
 * The constant-time code of tls_depad.c is compared with the plain,
 * branching reading of the same rules written here (RFC 5246 §7.4.7.1 and
 * RFC 8017 §7.2.2): for every input both must give the same verdict and
 * the same bytes. The input is client_version (2 bytes), alt_version (2),
 * the output room for the general depadder (2), the 48-byte random
 * premaster, then the block itself.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "tls_depad.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PMS KWP_TLS_PREMASTER_LEN
#define HDR (6 + PMS)
#define MAX_BLOCK 1024 /* RSA-8192 */

/* ref_message returns the index of the message in em, or 0 when the padding is bad. */
static size_t ref_message(const uint8_t *em, size_t k)
{
	if (k < 11 || em[0] != 0x00 || em[1] != 0x02)
		return 0;
	size_t i = 2;
	while (i < k && em[i] != 0x00)
		i++;
	if (i == k || i - 2 < 8) /* no separator, or PS shorter than 8 bytes */
		return 0;
	return i + 1;
}

static void ref_tls_depad(uint8_t out[PMS], const uint8_t *em, size_t k, unsigned client_version,
                          unsigned alt_version, const uint8_t random_pms[PMS])
{
	size_t m = ref_message(em, k);
	memcpy(out, random_pms, PMS);
	if (m == 0 || m != k - PMS)
		return;
	unsigned v = (unsigned)em[m] << 8 | em[m + 1];
	if (v == client_version || (alt_version != 0 && v == alt_version))
		memcpy(out, em + m, PMS);
}

static void check_tls(const uint8_t *em, size_t k, unsigned cv, unsigned alt, const uint8_t *pms)
{
	uint8_t got[PMS], want[PMS];

	memset(got, 0xa5, sizeof(got));
	int rc = kwp_tls_depad(got, em, k, cv, alt, pms);
	if (k < PMS + 11) {
		memset(want, 0xa5, sizeof(want)); /* refused, out untouched */
		if (rc != -EINVAL || memcmp(got, want, PMS) != 0)
			abort();
		return;
	}
	ref_tls_depad(want, em, k, cv, alt, pms);
	if (rc != 0 || memcmp(got, want, PMS) != 0)
		abort();
}

static void check_general(const uint8_t *em, size_t k, size_t outsize)
{
	/* Exactly outsize bytes, so a write past them is caught. */
	uint8_t *out = malloc(outsize > 0 ? outsize : 1);
	if (out == NULL)
		abort();
	int rc = kwp_pkcs1_type2_depad(out, outsize, em, k);
	size_t m = ref_message(em, k);
	if (m == 0 || k - m > outsize) {
		if (rc != -1)
			abort();
	} else if (rc < 0 || (size_t)rc != k - m || memcmp(out, em + m, k - m) != 0) {
		abort();
	}
	free(out);
}

/*
 * check_implicit_rej: a valid block gives its message; any other gives a
 * synthetic one no longer than outsize or the largest message, the same on
 * a second call (the PRF is keyed only on kdk), written within out.
 */
static void check_implicit_rej(const uint8_t *em, size_t k, size_t outsize, const uint8_t *kdk)
{
	uint8_t *out = malloc(outsize > 0 ? outsize : 1),
	        *again = malloc(outsize > 0 ? outsize : 1);
	if (out == NULL || again == NULL)
		abort();
	int rc = kwp_pkcs1_implicit_rej(out, outsize, em, k, kdk);
	size_t m = ref_message(em, k);
	if (k < 11) {
		if (rc != -1)
			abort();
	} else if (m != 0 && k - m <= outsize) {
		if (rc < 0 || (size_t)rc != k - m || memcmp(out, em + m, k - m) != 0)
			abort();
	} else if (rc < 0 || (size_t)rc > outsize || (size_t)rc >= k - 10 ||
	           kwp_pkcs1_implicit_rej(again, outsize, em, k, kdk) != rc ||
	           memcmp(out, again, (size_t)rc) != 0) {
		abort();
	}
	free(out);
	free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < HDR || size - HDR > MAX_BLOCK)
		return 0;
	unsigned cv = (unsigned)data[0] << 8 | data[1];
	unsigned alt = (unsigned)data[2] << 8 | data[3];
	size_t outsize = ((size_t)data[4] << 8 | data[5]) % (MAX_BLOCK + 1);
	const uint8_t *pms = data + 6;
	size_t k = size - HDR;
	/* A copy of exactly k bytes, so a read past the block is caught. */
	uint8_t *em = malloc(k > 0 ? k : 1);
	if (em == NULL)
		abort();
	memcpy(em, data + HDR, k);
	check_tls(em, k, cv, alt, pms);
	check_general(em, k, outsize);
	check_implicit_rej(em, k, outsize, pms); /* any 32 header bytes serve as the KDK */
	free(em);
	return 0;
}
