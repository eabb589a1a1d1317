/*
 * ctgrind_rsa_mb.c - the constant-time proof of the multi-buffer RSA kernel
 * (the "ctgrind" technique): the kernel, built against the scalar emulation
 * of its vector layer (same control flow, same addresses as the IFMA build),
 * runs with the private keys and the inputs marked undefined for Valgrind's
 * memcheck. memcheck reports every conditional jump and every memory address
 * computed from undefined bits, so a clean run shows that no branch and no
 * index depends on the key or the data. The results are then marked defined
 * and compared with OpenSSL, so the run also proves the emulation computes.
 *
 * Run by ctgrind.sh under valgrind; natively it only checks the results.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <valgrind/memcheck.h>

#include "rsa_mb.h"
#include "rsa_mb_kernel.h"

static struct kw_mb_key *mb_key(EVP_PKEY *pkey, unsigned bits)
{
	static const char *const names[5] = {
	    OSSL_PKEY_PARAM_RSA_FACTOR1,      OSSL_PKEY_PARAM_RSA_FACTOR2,
	    OSSL_PKEY_PARAM_RSA_EXPONENT1,    OSSL_PKEY_PARAM_RSA_EXPONENT2,
	    OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
	};
	BIGNUM *bn[5] = {NULL};
	struct kw_mb_key *k = NULL;

	for (int i = 0; i < 5; i++)
		EVP_PKEY_get_bn_param(pkey, names[i], &bn[i]);
	BIGNUM *n = NULL, *e = NULL;
	EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_N, &n);
	EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_E, &e);
	if (kw_mb_key_new(&k, bits, bn[0], bn[1], bn[2], bn[3], bn[4]) != 0 ||
	    kw_mb_key_set_public(k, n, e) != 0 || !k->pub.check) {
		kw_mb_key_free(k);
		k = NULL;
	}
	for (int i = 0; i < 5; i++)
		BN_clear_free(bn[i]);
	BN_free(n);
	BN_free(e);
	return k;
}

static int ref(EVP_PKEY *pkey, const uint8_t *in, uint8_t *out, size_t k)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
	size_t len = k;
	int ok = ctx != NULL && EVP_PKEY_decrypt_init(ctx) == 1 &&
	         EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_NO_PADDING) == 1 &&
	         EVP_PKEY_decrypt(ctx, out, &len, in, k) == 1 && len == k;
	EVP_PKEY_CTX_free(ctx);
	return ok ? 0 : -1;
}

/* secret marks everything of a key but its size and public part undefined. */
static void secret(struct kw_mb_key *k)
{
	VALGRIND_MAKE_MEM_UNDEFINED(&k->p, sizeof(k->p));
	VALGRIND_MAKE_MEM_UNDEFINED(&k->q, sizeof(k->q));
	VALGRIND_MAKE_MEM_UNDEFINED(k->qinv_r, sizeof(k->qinv_r));
}

int main(void)
{
	enum { NK = 2, BYTES = 256 };
	EVP_PKEY *pkeys[NK];
	struct kw_mb_key *keys[NK];
	const struct kw_mb_key *k8[8];
	uint8_t in[8][BYTES], out[8][BYTES], want[BYTES], *bufs[8];
	struct kw_mb_work *w = aligned_alloc(64, sizeof(*w));
	int bad = 0;

	for (int i = 0; i < NK; i++) {
		pkeys[i] = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
		keys[i] = pkeys[i] != NULL ? mb_key(pkeys[i], 2048) : NULL;
		if (keys[i] == NULL || w == NULL) {
			fprintf(stderr, "ctgrind_rsa_mb: setup failed\n");
			return 2;
		}
	}
	for (int l = 0; l < 8; l++) {
		RAND_bytes(in[l], BYTES);
		in[l][0] &= 0x3f;
		memcpy(out[l], in[l], BYTES);
		k8[l] = keys[l % NK];
		bufs[l] = out[l];
	}
	for (int i = 0; i < NK; i++)
		secret(keys[i]);
	VALGRIND_MAKE_MEM_UNDEFINED(out, sizeof(out));
	kw_mb_rsa_private_emu(k8, bufs, w);
	/* The results leave the kernel: from here on they are public. */
	VALGRIND_MAKE_MEM_DEFINED(out, sizeof(out));
	VALGRIND_MAKE_MEM_DEFINED(w->verified, sizeof(w->verified));
	for (int l = 0; l < 8; l++) {
		if (ref(pkeys[l % NK], in[l], want, BYTES) != 0 ||
		    memcmp(want, out[l], BYTES) != 0) {
			fprintf(stderr, "ctgrind_rsa_mb: lane %d differs from OpenSSL\n", l);
			bad++;
		}
		/* The kernel's own public check (s^65537 == c) must have passed. */
		if (w->verified[l] != 1) {
			fprintf(stderr, "ctgrind_rsa_mb: lane %d not verified by the kernel\n", l);
			bad++;
		}
	}
	for (int i = 0; i < NK; i++) {
		VALGRIND_MAKE_MEM_DEFINED(keys[i], sizeof(*keys[i]));
		kw_mb_key_free(keys[i]);
		EVP_PKEY_free(pkeys[i]);
	}
	VALGRIND_MAKE_MEM_DEFINED(w, sizeof(*w));
	free(w);
	printf("ctgrind_rsa_mb: %s\n", bad ? "WRONG RESULTS" : "8 lanes equal to OpenSSL");
	return bad ? 1 : 0;
}
