/*
 * engine_evp.c - the portable engine: OpenSSL EVP with one context per key
 * and direction (made on the key's first use, reused for every packet), and
 * AES header protection over a run of samples in one ECB call.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "engine.h"

struct evp_key {
	EVP_CIPHER_CTX *ctx[2]; /* [KW_QUIC_DIR_SEAL], [KW_QUIC_DIR_OPEN]: the AEAD */
	EVP_CIPHER_CTX *hp;     /* AES-ECB, or ChaCha20 re-initialised per sample */
	bool chacha;
};

void kw_quic_evp_key_free(void *state)
{
	struct evp_key *s = state;
	if (s == NULL)
		return;
	EVP_CIPHER_CTX_free(s->ctx[KW_QUIC_DIR_SEAL]);
	EVP_CIPHER_CTX_free(s->ctx[KW_QUIC_DIR_OPEN]);
	EVP_CIPHER_CTX_free(s->hp);
	free(s);
}

void *kw_quic_evp_key_new(const struct kw_quic_key *k)
{
	const EVP_CIPHER *aead, *hp;
	struct evp_key *s = calloc(1, sizeof(*s));

	if (s == NULL)
		return NULL;
	switch (k->cipher) {
	case KW_QUIC_CIPHER_AES_128_GCM:
		aead = EVP_aes_128_gcm();
		hp = EVP_aes_128_ecb();
		break;
	case KW_QUIC_CIPHER_AES_256_GCM:
		aead = EVP_aes_256_gcm();
		hp = EVP_aes_256_ecb();
		break;
	default:
		aead = EVP_chacha20_poly1305();
		hp = EVP_chacha20();
		s->chacha = true;
		break;
	}
	s->ctx[KW_QUIC_DIR_SEAL] = EVP_CIPHER_CTX_new();
	s->ctx[KW_QUIC_DIR_OPEN] = EVP_CIPHER_CTX_new();
	s->hp = EVP_CIPHER_CTX_new();
	if (s->ctx[KW_QUIC_DIR_SEAL] == NULL || s->ctx[KW_QUIC_DIR_OPEN] == NULL || s->hp == NULL ||
	    EVP_EncryptInit_ex(s->ctx[KW_QUIC_DIR_SEAL], aead, NULL, k->key, NULL) <= 0 ||
	    EVP_DecryptInit_ex(s->ctx[KW_QUIC_DIR_OPEN], aead, NULL, k->key, NULL) <= 0 ||
	    EVP_EncryptInit_ex(s->hp, hp, NULL, k->hp, NULL) <= 0 ||
	    EVP_CIPHER_CTX_set_padding(s->hp, 0) <= 0) {
		kw_quic_evp_key_free(s);
		return NULL;
	}
	return s;
}

bool kw_quic_evp_mask(void *state, const uint8_t *sample, uint8_t *mask)
{
	static const uint8_t zero[16];
	struct evp_key *s = state;
	int n;

	/* RFC 9001 §5.4.4: OpenSSL's 16-byte ChaCha20 IV is counter || nonce, the sample as is. */
	if (s->chacha && EVP_EncryptInit_ex(s->hp, NULL, NULL, NULL, sample) <= 0)
		return false;
	return EVP_EncryptUpdate(s->hp, mask, &n, s->chacha ? zero : sample, 16) > 0;
}

bool kw_quic_evp_aead(void *state, struct kw_quic_job *j, enum kw_quic_dir dir)
{
	EVP_CIPHER_CTX *c = ((struct evp_key *)state)->ctx[dir];
	int n, enc = dir == KW_QUIC_DIR_SEAL;

	if (EVP_CipherInit_ex(c, NULL, NULL, NULL, j->nonce, enc) <= 0 ||
	    EVP_CipherUpdate(c, NULL, &n, j->aad, (int)j->aad_len) <= 0)
		return false;
	if (j->data_len > 0 && EVP_CipherUpdate(c, j->data, &n, j->data, (int)j->data_len) <= 0)
		return false;
	if (!enc)
		return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, KW_QUIC_TAG_LEN, j->tag) > 0 &&
		       EVP_CipherFinal_ex(c, j->data + j->data_len, &n) > 0;
	return EVP_CipherFinal_ex(c, j->data + j->data_len, &n) > 0 &&
	       EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, KW_QUIC_TAG_LEN, j->tag) > 0;
}

static void *evp_state_new(struct kw_quic_engine *e, const struct kw_quic_key *k)
{
	return kw_quic_evp_key_new(k);
}

static void evp_aead(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n,
                     enum kw_quic_dir dir)
{
	for (size_t i = 0; i < n; i++)
		jobs[i].ok = kw_quic_evp_aead(jobs[i].aead, &jobs[i], dir);
}

/*
 * evp_masks computes AES masks for each run of jobs sharing a key with one
 * ECB call over their samples (what msquic does per batch); ChaCha20 masks
 * one by one, since each sample is an IV.
 */
static void evp_masks(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n)
{
	uint8_t in[KW_QUIC_CHUNK * 16], out[KW_QUIC_CHUNK * 16];

	for (size_t i = 0, run; i < n; i += run) {
		struct evp_key *s = jobs[i].hp;
		for (run = 1; i + run < n && jobs[i + run].hp == s; run++)
			;
		if (s->chacha) {
			for (size_t r = 0; r < run; r++)
				jobs[i + r].ok &=
				    kw_quic_evp_mask(s, jobs[i + r].sample, jobs[i + r].mask);
			continue;
		}
		for (size_t r = 0; r < run; r++)
			memcpy(in + 16 * r, jobs[i + r].sample, 16);
		int len;
		bool ok = EVP_EncryptUpdate(s->hp, out, &len, in, (int)(16 * run)) > 0;
		for (size_t r = 0; r < run; r++) {
			memcpy(jobs[i + r].mask, out + 16 * r, 16);
			jobs[i + r].ok &= ok;
		}
	}
}

/* Always available, nothing to set up: no available, init or fini. */
const struct kw_quic_engine_ops kw_quic_evp_ops = {
    .name = "evp",
    .key_state_new = evp_state_new,
    .key_state_free = kw_quic_evp_key_free,
    .aead = evp_aead,
    .masks = evp_masks,
};
