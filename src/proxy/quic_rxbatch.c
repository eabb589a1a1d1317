/*
 * quic_rxbatch.c - the pre-opened packets of one receive batch and the
 * checks that decide whether ngtcp2 may have them (see quic_rxbatch.h).
 */
#include "quic_rxbatch.h"

#include <stdlib.h>
#include <string.h>

struct kpx_rxb *kpx_rxb_new(size_t scratch)
{
	struct kpx_rxb *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	b->scratch = malloc(scratch);
	if (b->scratch == NULL) {
		free(b);
		return NULL;
	}
	b->cap = scratch;
	return b;
}

void kpx_rxb_free(struct kpx_rxb *b)
{
	if (b == NULL)
		return;
	kpx_rxb_clear(b);
	free(b->scratch);
	free(b);
}

bool kpx_rxb_add(struct kpx_rxb *b, const void *owner, const uint8_t *pkt, size_t len,
                 size_t pn_offset, uint64_t largest_pn, struct kw_quic_key *key,
                 struct kw_quic_key *key1)
{
	if (b->n == KPX_RXB_MAX || len > b->cap - b->used || (key == NULL && key1 == NULL) ||
	    len < pn_offset + 4 + KW_QUIC_SAMPLE_LEN)
		return false;
	uint8_t *copy = b->scratch + b->used;
	memcpy(copy, pkt, len);
	b->used += len;
	/* References for the run: nothing may free a key between add and run, but the batch
	 * should not depend on it. */
	b->pkts[b->n] = (struct kw_quic_pkt){
	    .buf = copy,
	    .len = len,
	    .hdr_len = 0,
	    .pn_offset = pn_offset,
	    .largest_pn = largest_pn,
	    .key = key != NULL ? kw_quic_key_ref(key) : NULL,
	    .key1 = key1 != NULL ? kw_quic_key_ref(key1) : NULL,
	    .conn = (uintptr_t)owner, /* a pool keeps each connection's order and core */
	    .dir = KW_QUIC_DIR_OPEN,
	};
	b->ent[b->n] = (struct kpx_rxb_ent){.owner = owner, .pkt = pkt, .len = len, .buf = copy};
	b->n++;
	return true;
}

size_t kpx_rxb_run(struct kpx_rxb *b, kpx_rxb_runner run, void *arg)
{
	if (b->n == 0)
		return 0;
	size_t ok = run(arg, b->pkts, b->n);
	for (size_t i = 0; i < b->n; i++) {
		struct kw_quic_pkt *p = &b->pkts[i];
		struct kpx_rxb_ent *en = &b->ent[i];
		en->status = p->status;
		en->hdr_len = p->hdr_len;
		en->out_len = p->out_len;
		en->pn = p->pn;
		/* The key phase bit is readable only once header protection came off. */
		if (p->hdr_len > p->pn_offset) {
			struct kw_quic_key *used = (p->buf[0] & 0x04) ? p->key1 : p->key;
			en->key = used != NULL ? kw_quic_key_ref(used) : NULL;
		}
		kw_quic_key_unref(p->key);
		kw_quic_key_unref(p->key1);
		p->key = p->key1 = NULL;
	}
	b->hint = 0;
	return ok;
}

struct kpx_rxb_ent *kpx_rxb_find(struct kpx_rxb *b, const void *owner, const uint8_t *pkt,
                                 size_t len, size_t pn_offset)
{
	for (size_t k = 0; k < b->n; k++) {
		size_t i = (b->hint + k) % b->n;
		struct kpx_rxb_ent *e = &b->ent[i];
		if (e->pkt != pkt || e->len != len || e->owner != owner)
			continue;
		if (e->hdr_len <= pn_offset || pn_offset != b->pkts[i].pn_offset)
			return NULL;
		b->hint = i + 1;
		return e;
	}
	return NULL;
}

bool kpx_rxb_matches(const struct kpx_rxb_ent *e, const struct kw_quic_key *key, uint64_t pn,
                     const uint8_t *ciphertext, size_t ct_len, const uint8_t *aad, size_t aadlen)
{
	/* Same key object (the entry holds a reference, so the address is not reused), same
	 * nonce, same bytes at the same place, same associated data: the same AEAD open. */
	return e->key != NULL && e->key == key && e->pn == pn && aadlen == e->hdr_len &&
	       ciphertext == e->pkt + e->hdr_len && ct_len == e->len - e->hdr_len &&
	       memcmp(aad, e->buf, aadlen) == 0;
}

size_t kpx_rxb_unused(const struct kpx_rxb *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->n; i++)
		n += !b->ent[i].taken;
	return n;
}

void kpx_rxb_clear(struct kpx_rxb *b)
{
	for (size_t i = 0; i < b->n; i++) {
		kw_quic_key_unref(b->ent[i].key);
		kw_quic_key_unref(b->pkts[i].key);
		kw_quic_key_unref(b->pkts[i].key1);
		b->pkts[i].key = b->pkts[i].key1 = NULL;
		b->ent[i].key = NULL;
	}
	b->n = 0;
	b->used = 0;
	b->hint = 0;
}
