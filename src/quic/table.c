/*
 * table.c - the connection table: connection ID -> connection, open
 * addressing with linear probing, keyed with a random per-table seed so
 * that peers choosing connection IDs cannot pick collisions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "table.h"

/* A removed entry: probing goes on past it; adding may reuse it. */
static struct kw_quic_conn tombstone;
#define TOMBSTONE (&tombstone)

int kw_quic_table_new(struct kw_quic_table **out, size_t cid_len, size_t max)
{
	struct kw_quic_table *t;
	size_t buckets = 16;

	*out = NULL;
	if (cid_len > KW_QUIC_CID_MAX || max == 0 || max > (1u << 24))
		return -EINVAL;
	while (buckets < 2 * max)
		buckets *= 2;
	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->slots = calloc(buckets, sizeof(*t->slots))) == NULL) {
		free(t);
		return -ENOMEM;
	}
	t->cid_len = cid_len;
	t->mask = buckets - 1;
	t->max = max;
	RAND_bytes((uint8_t *)t->seed, sizeof(t->seed));
	*out = t;
	return 0;
}

static void conn_free(struct kw_quic_conn *c)
{
	for (int l = 0; l < KW_QUIC_LEVEL_COUNT; l++) {
		kw_quic_key_unref(c->rx[l][0]);
		kw_quic_key_unref(c->rx[l][1]);
		kw_quic_key_unref(c->tx[l]);
	}
	free(c);
}

void kw_quic_table_free(struct kw_quic_table *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i <= t->mask; i++)
		if (t->slots[i] != NULL && t->slots[i] != TOMBSTONE)
			conn_free(t->slots[i]);
	free(t->slots);
	free(t);
}

/* hash mixes the seeded connection ID 8 bytes at a time (a keyed multiply-xorshift). */
static size_t hash(const struct kw_quic_table *t, const uint8_t *cid, size_t len)
{
	uint64_t h = t->seed[0] ^ len;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t w = 0;
		memcpy(&w, cid + i, len - i < 8 ? len - i : 8);
		h = (h ^ w ^ t->seed[1]) * 0x9e3779b97f4a7c15ull;
		h ^= h >> 29;
	}
	return (size_t)(h ^ (h >> 32));
}

/* lookup returns the slot index of cid, or of where it would go (the first free one). */
static size_t lookup(const struct kw_quic_table *t, const uint8_t *cid, size_t len, bool *found)
{
	size_t i = hash(t, cid, len) & t->mask, free_at = SIZE_MAX;

	for (size_t n = 0; n <= t->mask; n++, i = (i + 1) & t->mask) {
		struct kw_quic_conn *c = t->slots[i];
		if (c == NULL)
			break;
		if (c == TOMBSTONE) {
			if (free_at == SIZE_MAX)
				free_at = i;
			continue;
		}
		if (c->cid_len == len && memcmp(c->cid, cid, len) == 0) {
			*found = true;
			return i;
		}
	}
	*found = false;
	return free_at != SIZE_MAX ? free_at : i;
}

int kw_quic_table_add(struct kw_quic_table *t, const uint8_t *cid, size_t cid_len, uint64_t id,
                      struct kw_quic_conn **out)
{
	bool found;

	*out = NULL;
	if (cid_len > KW_QUIC_CID_MAX)
		return -EINVAL;
	size_t i = lookup(t, cid, cid_len, &found);
	if (found)
		return -EEXIST;
	if (t->count >= t->max)
		return -ENOSPC;
	struct kw_quic_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->id = id;
	memcpy(c->cid, cid, cid_len);
	c->cid_len = (uint8_t)cid_len;
	for (int s = 0; s < 3; s++)
		c->largest_pn[s] = UINT64_MAX;
	t->slots[i] = c;
	t->count++;
	*out = c;
	return 0;
}

struct kw_quic_conn *kw_quic_table_find(struct kw_quic_table *t, const uint8_t *cid, size_t cid_len)
{
	bool found;
	if (cid_len > KW_QUIC_CID_MAX)
		return NULL;
	size_t i = lookup(t, cid, cid_len, &found);
	return found ? t->slots[i] : NULL;
}

int kw_quic_table_remove(struct kw_quic_table *t, const uint8_t *cid, size_t cid_len)
{
	bool found;
	if (cid_len > KW_QUIC_CID_MAX)
		return -ENOENT;
	size_t i = lookup(t, cid, cid_len, &found);
	if (!found)
		return -ENOENT;
	conn_free(t->slots[i]);
	t->slots[i] = TOMBSTONE;
	t->count--;
	return 0;
}

void kw_quic_conn_set_key(struct kw_quic_conn *c, enum kw_quic_level level, enum kw_quic_dir dir,
                          unsigned phase, struct kw_quic_key *k)
{
	struct kw_quic_key **slot =
	    dir == KW_QUIC_DIR_SEAL ? &c->tx[level] : &c->rx[level][phase & 1];
	kw_quic_key_ref(k);
	kw_quic_key_unref(*slot);
	*slot = k;
}

static const enum kw_quic_space level_space[KW_QUIC_LEVEL_COUNT] = {
    [KW_QUIC_LEVEL_INITIAL] = KW_QUIC_SPACE_INITIAL,
    [KW_QUIC_LEVEL_0RTT] = KW_QUIC_SPACE_APP,
    [KW_QUIC_LEVEL_HANDSHAKE] = KW_QUIC_SPACE_HANDSHAKE,
    [KW_QUIC_LEVEL_1RTT] = KW_QUIC_SPACE_APP,
};

void kw_quic_conn_received(struct kw_quic_conn *c, enum kw_quic_level level, uint64_t pn)
{
	uint64_t *largest = &c->largest_pn[level_space[level]];
	if (*largest == UINT64_MAX || pn > *largest)
		*largest = pn;
}

void kw_quic_class_pkt(const struct kw_quic_class *c, uint8_t *buf, struct kw_quic_pkt *pkt)
{
	memset(pkt, 0, sizeof(*pkt));
	pkt->buf = buf;
	pkt->len = c->h.pkt_len;
	pkt->pn_offset = c->h.pn_offset;
	pkt->dir = KW_QUIC_DIR_OPEN;
	pkt->largest_pn = UINT64_MAX;
	if (c->conn == NULL)
		return;
	pkt->conn = c->conn->id;
	pkt->key = c->conn->rx[c->level][0];
	pkt->key1 = c->conn->rx[c->level][1];
	pkt->largest_pn = c->conn->largest_pn[level_space[c->level]];
}

void kw_quic_table_stats(const struct kw_quic_table *t, struct kw_quic_table_stats *out)
{
	*out = t->stats;
}
