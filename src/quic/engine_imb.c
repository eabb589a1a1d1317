/*
 * engine_imb.c - the ipsec-mb engine (Debian's libipsec-mb 1.3): AES-GCM
 * through the single-shot GCM functions (per packet they cost ~5 % less CPU
 * than the burst API's job fill and dispatch, measured side by side), AES
 * header protection as ECB jobs over the gathered samples through the
 * generic burst API, one job per run of same-key samples (1.3's cipher-only
 * burst refuses ECB, the generic burst takes it). What 1.3 cannot do is done with EVP and counted:
 * ChaCha20 header protection needs the sample's first four bytes as the
 * block counter, and its ChaCha20-Poly1305 goes through EVP as well.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <intel-ipsec-mb.h>
#include <openssl/crypto.h>

#include "engine.h"

struct imb_key {
	struct gcm_key_data gcm; /* expanded AEAD key and GHASH tables (64-byte aligned) */
	uint32_t hp_enc[15 * 4]; /* expanded header-protection key */
	uint32_t hp_dec[15 * 4]; /* unused; the expansion writes both */
	void *evp;               /* ChaCha20: the EVP engine's contexts */
	uint64_t key_len;        /* 16 or 32 */
};

/* available: the library runs here with AES-NI at least (decided once). */
static bool imb_available(void)
{
	static _Atomic int state; /* 0 unknown, 1 yes, -1 no */
	if (state == 0) {
		IMB_MGR *m = alloc_mb_mgr(0);
		IMB_ARCH arch = IMB_ARCH_NONE;
		if (m != NULL)
			init_mb_mgr_auto(m, &arch);
		state = (m != NULL && arch != IMB_ARCH_NONE && arch != IMB_ARCH_NOAESNI &&
		         (m->features & IMB_FEATURE_AESNI))
		            ? 1
		            : -1;
		free_mb_mgr(m);
	}
	return state == 1;
}

static int imb_init(struct kw_quic_engine *e)
{
	IMB_MGR *m = alloc_mb_mgr(0);
	IMB_ARCH arch = IMB_ARCH_NONE;
	if (m == NULL)
		return -ENOMEM;
	init_mb_mgr_auto(m, &arch);
	if (arch == IMB_ARCH_NONE) {
		free_mb_mgr(m);
		return -ENOENT;
	}
	e->priv = m;
	return 0;
}

static void imb_fini(struct kw_quic_engine *e)
{
	free_mb_mgr(e->priv);
}

static void imb_key_free(void *state)
{
	struct imb_key *s = state;
	if (s == NULL)
		return;
	kw_quic_evp_key_free(s->evp);
	OPENSSL_cleanse(s, sizeof(*s));
	free(s);
}

static void *imb_key_new(struct kw_quic_engine *e, const struct kw_quic_key *k)
{
	IMB_MGR *m = e->priv;
	size_t size = (sizeof(struct imb_key) + 63) & ~(size_t)63;
	struct imb_key *s = aligned_alloc(64, size);

	if (s == NULL)
		return NULL;
	memset(s, 0, sizeof(*s));
	s->key_len = k->key_len;
	if (k->cipher == KW_QUIC_CIPHER_CHACHA20_POLY1305) {
		if ((s->evp = kw_quic_evp_key_new(k)) == NULL) {
			free(s);
			return NULL;
		}
	} else if (k->cipher == KW_QUIC_CIPHER_AES_128_GCM) {
		IMB_AES128_GCM_PRE(m, k->key, &s->gcm);
		IMB_AES_KEYEXP_128(m, k->hp, s->hp_enc, s->hp_dec);
	} else {
		IMB_AES256_GCM_PRE(m, k->key, &s->gcm);
		IMB_AES_KEYEXP_256(m, k->hp, s->hp_enc, s->hp_dec);
	}
	return s;
}

/* fill_cipher sets the cipher's input and output: from src into kj->data, kj->data_len bytes. */
static void fill_cipher(IMB_JOB *j, struct kw_quic_job *kj, const void *src, uint64_t key_len)
{
	j->key_len_in_bytes = key_len;
	j->src = src;
	j->dst = kj->data;
	j->cipher_start_src_offset_in_bytes = 0;
	j->msg_len_to_cipher_in_bytes = kj->data_len;
}

/*
 * fill_mask: AES header protection (RFC 9001 §5.4.3) for a run of samples
 * under one key, gathered at kj->sample: one ECB job of data_len bytes into
 * kj->data instead of one job per 16-byte block.
 */
static void fill_mask(IMB_JOB *j, struct kw_quic_job *kj)
{
	struct imb_key *s = kj->hp;

	j->cipher_mode = IMB_CIPHER_ECB;
	j->hash_alg = IMB_AUTH_NULL;
	j->cipher_direction = IMB_DIR_ENCRYPT;
	j->chain_order = IMB_ORDER_CIPHER_HASH;
	j->enc_keys = s->hp_enc;
	j->dec_keys = s->hp_dec;
	fill_cipher(j, kj, kj->sample, s->key_len);
	j->iv = NULL;
	j->iv_len_in_bytes = 0;
}

typedef void (*fill_fn)(IMB_JOB *j, struct kw_quic_job *kj);

/* mark records which of n returned ipsec-mb jobs completed. */
static void mark(IMB_JOB **bj, uint32_t n, struct kw_quic_job *jobs, bool *done)
{
	for (uint32_t k = 0; k < n; k++)
		done[(struct kw_quic_job *)bj[k]->user_data - jobs] =
		    bj[k]->status == IMB_STATUS_COMPLETED;
}

/*
 * burst runs jobs[idx[0..ni)] through the generic burst API and sets
 * done[i] for those that completed, in whatever order they come back.
 */
static void burst(IMB_MGR *m, struct kw_quic_job *jobs, size_t *idx, size_t ni, fill_fn fill,
                  bool *done)
{
	IMB_JOB *bj[KW_QUIC_CHUNK];

	for (size_t k = 0; k < ni; k++)
		done[idx[k]] = false;
	for (size_t i = 0; i < ni;) {
		uint32_t got = IMB_GET_NEXT_BURST(m, (uint32_t)(ni - i), bj);
		if (got == 0) {
			uint32_t f = IMB_FLUSH_BURST(m, KW_QUIC_CHUNK, bj);
			if (f == 0)
				break; /* the manager is stuck: the rest stay not done */
			mark(bj, f, jobs, done);
			continue;
		}
		for (uint32_t k = 0; k < got; k++) {
			fill(bj[k], &jobs[idx[i + k]]);
			bj[k]->user_data = &jobs[idx[i + k]];
		}
		mark(bj, IMB_SUBMIT_BURST_NOCHECK(m, got, bj), jobs, done);
		i += got;
	}
	for (uint32_t f; (f = IMB_FLUSH_BURST(m, KW_QUIC_CHUNK, bj)) > 0;)
		mark(bj, f, jobs, done);
}

/*
 * gcm_direct runs one AES-GCM seal or open through ipsec-mb's single-shot
 * GCM functions: for whole packets these skip the job manager's dispatch and
 * job fill, which cost as much per packet as the rest of the engine.
 */
static void gcm_direct(IMB_MGR *m, struct kw_quic_job *kj, enum kw_quic_dir dir)
{
	struct imb_key *s = kj->aead;
	struct gcm_context_data ctx;
	uint8_t *tag = dir == KW_QUIC_DIR_SEAL ? kj->tag : kj->mask;

	if (s->key_len == 16) {
		if (dir == KW_QUIC_DIR_SEAL)
			IMB_AES128_GCM_ENC(m, &s->gcm, &ctx, kj->data, kj->data, kj->data_len,
			                   kj->nonce, kj->aad, kj->aad_len, tag, KW_QUIC_TAG_LEN);
		else
			IMB_AES128_GCM_DEC(m, &s->gcm, &ctx, kj->data, kj->data, kj->data_len,
			                   kj->nonce, kj->aad, kj->aad_len, tag, KW_QUIC_TAG_LEN);
	} else {
		if (dir == KW_QUIC_DIR_SEAL)
			IMB_AES256_GCM_ENC(m, &s->gcm, &ctx, kj->data, kj->data, kj->data_len,
			                   kj->nonce, kj->aad, kj->aad_len, tag, KW_QUIC_TAG_LEN);
		else
			IMB_AES256_GCM_DEC(m, &s->gcm, &ctx, kj->data, kj->data, kj->data_len,
			                   kj->nonce, kj->aad, kj->aad_len, tag, KW_QUIC_TAG_LEN);
	}
	/* The context holds keystream and hash state of the packet. */
	OPENSSL_cleanse(&ctx, sizeof(ctx));
	kj->ok = dir == KW_QUIC_DIR_SEAL || CRYPTO_memcmp(kj->mask, kj->tag, KW_QUIC_TAG_LEN) == 0;
}

static void imb_aead(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n,
                     enum kw_quic_dir dir)
{
	for (size_t i = 0; i < n; i++) {
		struct imb_key *s = jobs[i].aead;
		if (s->evp == NULL) {
			gcm_direct(e->priv, &jobs[i], dir);
			continue;
		}
		jobs[i].ok = kw_quic_evp_aead(s->evp, &jobs[i], dir);
		e->stats.aead_fallback++;
	}
}

static void imb_masks(struct kw_quic_engine *e, struct kw_quic_job *jobs, size_t n)
{
	uint8_t in[KW_QUIC_CHUNK * 16], out[KW_QUIC_CHUNK * 16];
	struct kw_quic_job runs[KW_QUIC_CHUNK];
	size_t idx[KW_QUIC_CHUNK], ridx[KW_QUIC_CHUNK], run_of[KW_QUIC_CHUNK], ni = 0, nr = 0;
	bool done[KW_QUIC_CHUNK];

	for (size_t i = 0; i < n; i++) {
		struct imb_key *s = jobs[i].hp;
		if (s->evp != NULL) {
			jobs[i].ok &= kw_quic_evp_mask(s->evp, jobs[i].sample, jobs[i].mask);
			e->stats.hp_fallback++;
			continue;
		}
		/* Gather the samples; consecutive ones under one key make one run. */
		memcpy(in + 16 * ni, jobs[i].sample, 16);
		if (nr == 0 || runs[nr - 1].hp != s) {
			runs[nr] = (struct kw_quic_job){
			    .hp = s, .sample = in + 16 * ni, .data = out + 16 * ni};
			ridx[nr] = nr;
			nr++;
		}
		runs[nr - 1].data_len += 16;
		run_of[ni] = nr - 1;
		idx[ni++] = i;
	}
	burst(e->priv, runs, ridx, nr, fill_mask, done);
	for (size_t k = 0; k < ni; k++) {
		memcpy(jobs[idx[k]].mask, out + 16 * k, 16);
		jobs[idx[k]].ok &= done[run_of[k]];
	}
}

const struct kw_quic_engine_ops kw_quic_imb_ops = {
    .name = "ipsec-mb",
    .available = imb_available,
    .init = imb_init,
    .fini = imb_fini,
    .key_state_new = imb_key_new,
    .key_state_free = imb_key_free,
    .aead = imb_aead,
    .masks = imb_masks,
};
