/*
 * engine.c - the batch interface every packet-protection engine shares:
 * checks, nonces, samples, header-protection masks applied and removed,
 * packet numbers, key counters; the engine does the cryptography per chunk.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "keyway/err.h"

#define PN_MAX ((1ull << 62) - 1)

static const struct kw_quic_engine_ops *const engines[] = {
#ifdef KW_HAVE_IPSEC_MB
    &kw_quic_imb_ops,
#endif
    &kw_quic_evp_ops,
};
#define N_ENGINES (sizeof(engines) / sizeof(engines[0]))

/* Slot indices in use (one bit each) and the generation handed out last. */
static _Atomic uint64_t slots_used;
static _Atomic uint64_t slot_gen;

static const struct kw_quic_engine_ops *find(const char *name)
{
	for (size_t i = 0; i < N_ENGINES; i++)
		/* "auto" is the first available: ipsec-mb when built in, then evp. */
		if ((strcmp(name, "auto") == 0 || strcmp(name, engines[i]->name) == 0) &&
		    (engines[i]->available == NULL || engines[i]->available()))
			return engines[i];
	return NULL;
}

bool kw_quic_engine_available(const char *name)
{
	return name != NULL && find(name) != NULL;
}

static int slot_claim(unsigned *slot)
{
	uint64_t used = atomic_load(&slots_used);
	for (;;) {
		if (~used == 0)
			return -EBUSY;
		unsigned i = (unsigned)__builtin_ctzll(~used);
		if (atomic_compare_exchange_weak(&slots_used, &used, used | (1ull << i))) {
			*slot = i;
			return 0;
		}
	}
}

static void slot_release(unsigned slot)
{
	atomic_fetch_and(&slots_used, ~(1ull << slot));
}

int kw_quic_engine_new(struct kw_quic_engine **out, const char *name)
{
	const struct kw_quic_engine_ops *ops = name != NULL ? find(name) : NULL;
	struct kw_quic_engine *e;
	int rc;

	*out = NULL;
	if (ops == NULL)
		return -ENOENT;
	if ((e = calloc(1, sizeof(*e))) == NULL)
		return -ENOMEM;
	e->ops = ops;
	if ((rc = slot_claim(&e->slot)) < 0) {
		free(e);
		return rc;
	}
	e->gen = atomic_fetch_add(&slot_gen, 1) + 1;
	if (ops->init == NULL || (rc = ops->init(e)) == 0) {
		*out = e;
		return 0;
	}
	slot_release(e->slot);
	free(e);
	return rc;
}

void kw_quic_engine_free(struct kw_quic_engine *e)
{
	if (e == NULL)
		return;
	if (e->ops->fini != NULL)
		e->ops->fini(e);
	/* Contexts left in keys are freed with the keys or by the slot's next owner. */
	slot_release(e->slot);
	free(e);
}

const char *kw_quic_engine_name(const struct kw_quic_engine *e)
{
	return e->ops->name;
}

void kw_quic_engine_stats(const struct kw_quic_engine *e, struct kw_quic_engine_stats *out)
{
	*out = e->stats;
}

/* key_state returns this instance's contexts for k, making them on first use. */
static void *key_state(struct kw_quic_engine *e, struct kw_quic_key *k)
{
	struct kw_quic_key_slot *s = &k->slot[e->slot];

	if (s->gen == e->gen)
		return s->state;
	if (s->state != NULL)
		s->free(s->state);
	s->state = e->ops->key_state_new(e, k);
	s->free = e->ops->key_state_free;
	s->gen = s->state != NULL ? e->gen : 0;
	e->stats.key_setups++;
	return s->state;
}

/* set_nonce: RFC 9001 §5.3, the IV XOR the packet number left-padded to 12 bytes. */
static void set_nonce(struct kw_quic_job *j, const struct kw_quic_key *k, uint64_t pn)
{
	memcpy(j->nonce, k->iv, KW_QUIC_IV_LEN);
	for (int i = 0; i < 8; i++)
		j->nonce[KW_QUIC_IV_LEN - 1 - i] ^= (uint8_t)(pn >> (8 * i));
}

/*
 * hp_xor applies (protect) or removes the mask (RFC 9001 §5.4.1): 4 bits of
 * a long header's first byte, 5 of a short one's, and the packet number.
 * Returns the packet-number length.
 */
static unsigned hp_xor(uint8_t *p, size_t pn_offset, const uint8_t *mask, bool protect)
{
	uint8_t bits = (p[0] & 0x80) ? 0x0f : 0x1f;
	unsigned pn_len = (p[0] & 3) + 1;

	p[0] ^= mask[0] & bits;
	if (!protect)
		pn_len = (p[0] & 3) + 1;
	for (unsigned i = 0; i < pn_len; i++)
		p[pn_offset + i] ^= mask[1 + i];
	return pn_len;
}

static int fail(struct kw_quic_pkt *p, int status)
{
	p->status = status;
	return status;
}

static int prepare_seal(struct kw_quic_engine *e, struct kw_quic_pkt *p, struct kw_quic_job *j)
{
	if (p->buf == NULL || p->key == NULL || p->len > KW_QUIC_PKT_MAX || p->hdr_len < 2 ||
	    p->hdr_len > p->len || p->pn > PN_MAX)
		return fail(p, -EINVAL);
	size_t pn_len = (p->buf[0] & 3) + 1;
	if (p->hdr_len < 1 + pn_len)
		return fail(p, -EINVAL);
	size_t pn_offset = p->hdr_len - pn_len;
	/* RFC 9001 §5.4.2: the sample starts 4 bytes after the packet number's start. */
	if (pn_offset + 4 > p->len)
		return fail(p, -EINVAL);
	j->pkt = p;
	j->key = p->key;
	if ((j->aead = j->hp = key_state(e, p->key)) == NULL)
		return fail(p, -ENOMEM);
	set_nonce(j, p->key, p->pn);
	j->aad = p->buf;
	j->aad_len = p->hdr_len;
	j->data = p->buf + p->hdr_len;
	j->data_len = p->len - p->hdr_len;
	j->tag = p->buf + p->len;
	j->sample = p->buf + pn_offset + 4;
	j->ok = true;
	p->pn_offset = pn_offset;
	return 0;
}

typedef int (*prepare_fn)(struct kw_quic_engine *e, struct kw_quic_pkt *p, struct kw_quic_job *j);

/* gather prepares e's jobs for the packets of pkts going in direction dir; returns how many. */
static size_t gather(struct kw_quic_engine *e, struct kw_quic_pkt *pkts, size_t n,
                     enum kw_quic_dir dir, prepare_fn prepare)
{
	size_t nj = 0;

	for (size_t i = 0; i < n; i++)
		if (pkts[i].dir == dir && prepare(e, &pkts[i], &e->jobs[nj]) == 0)
			nj++;
	return nj;
}

/* count_seals adds each run of jobs under one key to that key's count. */
static void count_seals(struct kw_quic_job *jobs, size_t n)
{
	for (size_t i = 0, run; i < n; i += run) {
		for (run = 1; i + run < n && jobs[i + run].key == jobs[i].key; run++)
			;
		bool limit = kw_quic_key_count_seal(jobs[i].key, run);
		for (size_t r = 0; r < run; r++)
			jobs[i + r].pkt->must_update = limit;
	}
}

static size_t seal_chunk(struct kw_quic_engine *e, struct kw_quic_pkt *pkts, size_t n)
{
	struct kw_quic_job *jobs = e->jobs;
	size_t nj = gather(e, pkts, n, KW_QUIC_DIR_SEAL, prepare_seal), ok = 0;

	if (nj == 0)
		return 0;
	e->ops->aead(e, jobs, nj, KW_QUIC_DIR_SEAL);
	e->ops->masks(e, jobs, nj);
	for (size_t i = 0; i < nj; i++) {
		struct kw_quic_pkt *p = jobs[i].pkt;
		if (!jobs[i].ok) {
			p->status = -KW_ECRYPTO;
			continue;
		}
		hp_xor(p->buf, p->pn_offset, jobs[i].mask, true);
		p->status = 0;
		p->out_len = p->len + KW_QUIC_TAG_LEN;
		ok++;
	}
	count_seals(jobs, nj);
	e->stats.sealed += ok;
	return ok;
}

static int prepare_open(struct kw_quic_engine *e, struct kw_quic_pkt *p, struct kw_quic_job *j)
{
	/* Too short for a sample: RFC 9001 §5.4.2 says discard. */
	if (p->buf == NULL || p->key == NULL || p->len > KW_QUIC_PKT_MAX || p->pn_offset < 1 ||
	    p->pn_offset > p->len || p->pn_offset + 4 + KW_QUIC_SAMPLE_LEN > p->len)
		return fail(p, -EINVAL);
	j->pkt = p;
	if ((j->hp = key_state(e, p->key)) == NULL)
		return fail(p, -ENOMEM);
	j->sample = p->buf + p->pn_offset + 4;
	j->ok = true;
	return 0;
}

/* unmask removes header protection and sets up the AEAD of an open job. */
static int unmask(struct kw_quic_engine *e, struct kw_quic_job *j)
{
	struct kw_quic_pkt *p = j->pkt;
	uint8_t *b = p->buf;
	uint64_t truncated = 0;

	if (!j->ok)
		return fail(p, -KW_ECRYPTO);
	unsigned pn_len = hp_xor(b, p->pn_offset, j->mask, false);
	for (unsigned i = 0; i < pn_len; i++)
		truncated = truncated << 8 | b[p->pn_offset + i];
	p->pn = kw_quic_pn_decode(p->largest_pn, truncated, pn_len);
	p->hdr_len = p->pn_offset + pn_len;
	/* A short header's key phase bit picks the key (RFC 9001 §6). */
	j->key = (!(b[0] & 0x80) && (b[0] & 0x04)) ? p->key1 : p->key;
	if (j->key == NULL)
		return fail(p, -KW_ENOKEY);
	if ((j->aead = key_state(e, j->key)) == NULL)
		return fail(p, -ENOMEM);
	set_nonce(j, j->key, p->pn);
	j->aad = b;
	j->aad_len = p->hdr_len;
	j->data = b + p->hdr_len;
	j->data_len = p->len - p->hdr_len - KW_QUIC_TAG_LEN;
	j->tag = b + p->len - KW_QUIC_TAG_LEN;
	return 0;
}

static size_t open_chunk(struct kw_quic_engine *e, struct kw_quic_pkt *pkts, size_t n)
{
	struct kw_quic_job *jobs = e->jobs;
	size_t nj = gather(e, pkts, n, KW_QUIC_DIR_OPEN, prepare_open), live = 0, ok = 0;

	if (nj == 0)
		return 0;
	e->ops->masks(e, jobs, nj);
	for (size_t i = 0; i < nj; i++)
		if (unmask(e, &jobs[i]) == 0)
			jobs[live++] = jobs[i];
	if (live == 0)
		return 0;
	e->ops->aead(e, jobs, live, KW_QUIC_DIR_OPEN);
	for (size_t i = 0; i < live; i++) {
		struct kw_quic_pkt *p = jobs[i].pkt;
		if (!jobs[i].ok) {
			p->status = -KW_ECRYPTO;
			kw_quic_key_count_fail(jobs[i].key, 1);
			e->stats.failed++;
			continue;
		}
		p->status = 0;
		p->out_len = jobs[i].data_len;
		ok++;
	}
	e->stats.opened += ok;
	return ok;
}

size_t kw_quic_engine_run(struct kw_quic_engine *e, struct kw_quic_pkt *pkts, size_t n)
{
	size_t ok = 0;

	for (size_t i = 0; i < n; i += KW_QUIC_CHUNK) {
		size_t m = n - i < KW_QUIC_CHUNK ? n - i : KW_QUIC_CHUNK;
		ok += seal_chunk(e, pkts + i, m);
		ok += open_chunk(e, pkts + i, m);
	}
	return ok;
}
