/*
 * test_table.c - table.c: connections added, found and removed by
 * connection ID (with reuse of removed slots), keys per level, direction
 * and key phase with their references, the largest packet number per
 * space, and what an opened packet is given.
 */
#include <errno.h>

#include "check.h"
#include "key.h"
#include "quic_test.h"

static void test_add_find_remove(void)
{
	struct kw_quic_table *t;
	struct kw_quic_conn *c;
	uint8_t id[20];

	CHECK_EQ(kw_quic_table_new(&t, 21, 4), -EINVAL);
	CHECK_EQ(kw_quic_table_new(&t, 8, 100), 0);
	for (int round = 0; round < 5; round++) {
		for (int i = 0; i < 100; i++) {
			memset(id, 0, sizeof(id));
			id[0] = (uint8_t)i, id[1] = (uint8_t)round;
			CHECK_EQ(kw_quic_table_add(t, id, 8, (uint64_t)i, &c), 0);
		}
		CHECK_EQ(kw_quic_table_add(t, id, 9, 0, &c), -ENOSPC);
		id[0] = 5;
		CHECK_EQ(kw_quic_table_remove(t, id, 8), 0);
		CHECK_EQ(kw_quic_table_add(t, id, 8, 5, &c), 0);
		CHECK_EQ(kw_quic_table_add(t, id, 8, 5, &c), -EEXIST);
		for (int i = 0; i < 100; i++) {
			id[0] = (uint8_t)i;
			c = kw_quic_table_find(t, id, 8);
			CHECK(c != NULL && c->id == (uint64_t)i);
			CHECK(kw_quic_table_find(t, id, 7) == NULL);
			CHECK_EQ(kw_quic_table_remove(t, id, 8), 0);
		}
		CHECK_EQ(kw_quic_table_remove(t, id, 8), -ENOENT);
	}
	CHECK_EQ(kw_quic_table_add(t, id, 21, 0, &c), -EINVAL);
	kw_quic_table_free(t);
}

/* Connection IDs differing only in length, or empty, are different connections. */
static void test_cid_lengths(void)
{
	static const uint8_t id[8] = {9, 9, 9, 9, 9, 9, 9, 9};
	struct kw_quic_table *t;
	struct kw_quic_conn *a, *b, *e;

	CHECK_EQ(kw_quic_table_new(&t, 0, 0), -EINVAL);
	CHECK_EQ(kw_quic_table_new(&t, 8, (1u << 24) + 1), -EINVAL);
	CHECK_EQ(kw_quic_table_new(&t, 8, 3), 0);
	CHECK_EQ(kw_quic_table_add(t, id, 8, 1, &a), 0);
	CHECK_EQ(kw_quic_table_add(t, id, 4, 2, &b), 0);
	CHECK_EQ(kw_quic_table_add(t, id, 0, 3, &e), 0);
	CHECK(a != b && b != e);
	CHECK(kw_quic_table_find(t, id, 8) == a && a->cid_len == 8 && memcmp(a->cid, id, 8) == 0);
	CHECK(kw_quic_table_find(t, id, 4) == b && b->id == 2);
	CHECK(kw_quic_table_find(t, id + 4, 0) == e && e->id == 3);
	CHECK(kw_quic_table_find(t, id, 21) == NULL);
	CHECK_EQ(kw_quic_table_remove(t, id, 21), -ENOENT);
	/* A new connection has no keys and no packet received. */
	for (int l = 0; l < KW_QUIC_LEVEL_COUNT; l++)
		CHECK(a->tx[l] == NULL && a->rx[l][0] == NULL && a->rx[l][1] == NULL);
	for (int s = 0; s < 3; s++)
		CHECK_EQ(a->largest_pn[s], UINT64_MAX);
	kw_quic_table_free(t);
	kw_quic_table_free(NULL);
}

static unsigned refs(struct kw_quic_key *k)
{
	return atomic_load(&k->refs);
}

/* Keys by level, direction and phase; the table holds one reference to each. */
static void test_keys(void)
{
	uint8_t secret[32] = {5};
	struct kw_quic_table *t;
	struct kw_quic_conn *c;
	struct kw_quic_key *k0, *k1;

	CHECK_EQ(kw_quic_key_new(&k0, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	CHECK_EQ(kw_quic_key_next(&k1, k0), 0);
	CHECK_EQ(kw_quic_table_new(&t, 8, 4), 0);
	CHECK_EQ(kw_quic_table_add(t, secret, 8, 42, &c), 0);

	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 0, k0);
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 3, k1); /* phase is one bit */
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_SEAL, 1, k0); /* phase ignored */
	CHECK(c->rx[KW_QUIC_LEVEL_1RTT][0] == k0 && c->rx[KW_QUIC_LEVEL_1RTT][1] == k1);
	CHECK(c->tx[KW_QUIC_LEVEL_1RTT] == k0);
	CHECK(c->rx[KW_QUIC_LEVEL_HANDSHAKE][0] == NULL && c->tx[KW_QUIC_LEVEL_INITIAL] == NULL);
	CHECK_EQ(refs(k0), 3);
	CHECK_EQ(refs(k1), 2);

	/* What an opened 1-RTT packet of this connection is given: both phases' keys. */
	struct kw_quic_class cl = {.verdict = KW_QUIC_VERDICT_NEEDS_CRYPTO,
	                           .level = KW_QUIC_LEVEL_1RTT,
	                           .conn = c,
	                           .h = {.pn_offset = 9, .pkt_len = 100}};
	struct kw_quic_pkt p;
	uint8_t buf[100];
	kw_quic_conn_received(c, KW_QUIC_LEVEL_1RTT, 7);
	kw_quic_class_pkt(&cl, buf, &p);
	CHECK(p.buf == buf && p.len == 100 && p.pn_offset == 9 && p.dir == KW_QUIC_DIR_OPEN);
	CHECK(p.key == k0 && p.key1 == k1);
	CHECK_EQ(p.conn, 42);
	CHECK_EQ(p.largest_pn, 7);
	/* A new client Initial has no connection: no keys, nothing received. */
	cl.conn = NULL;
	kw_quic_class_pkt(&cl, buf, &p);
	CHECK(p.key == NULL && p.key1 == NULL && p.conn == 0 && p.largest_pn == UINT64_MAX);

	/* Replacing drops the old reference; NULL clears. */
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 0, k1);
	CHECK_EQ(refs(k0), 2);
	CHECK_EQ(refs(k1), 3);
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_SEAL, 0, NULL);
	CHECK(c->tx[KW_QUIC_LEVEL_1RTT] == NULL);
	CHECK_EQ(refs(k0), 1);

	/* Removing the connection drops its keys; so does freeing the table. */
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_HANDSHAKE, KW_QUIC_DIR_SEAL, 0, k0);
	CHECK_EQ(kw_quic_table_remove(t, secret, 8), 0);
	CHECK_EQ(refs(k0), 1);
	CHECK_EQ(refs(k1), 1);
	CHECK_EQ(kw_quic_table_add(t, secret, 8, 43, &c), 0);
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_INITIAL, KW_QUIC_DIR_OPEN, 0, k1);
	CHECK_EQ(refs(k1), 2);
	kw_quic_table_free(t);
	CHECK_EQ(refs(k1), 1);
	kw_quic_key_unref(k1);
	kw_quic_key_unref(k0);
}

/* The largest packet number per space: 0-RTT and 1-RTT share one; it never goes down. */
static void test_received(void)
{
	struct kw_quic_table *t;
	struct kw_quic_conn *c;

	CHECK_EQ(kw_quic_table_new(&t, 4, 1), 0);
	CHECK_EQ(kw_quic_table_add(t, (const uint8_t *)"abcd", 4, 1, &c), 0);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_INITIAL, 0);
	CHECK_EQ(c->largest_pn[KW_QUIC_SPACE_INITIAL], 0);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_HANDSHAKE, 5);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_HANDSHAKE, 3);
	CHECK_EQ(c->largest_pn[KW_QUIC_SPACE_HANDSHAKE], 5);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_0RTT, 10);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_1RTT, 8);
	CHECK_EQ(c->largest_pn[KW_QUIC_SPACE_APP], 10);
	kw_quic_conn_received(c, KW_QUIC_LEVEL_1RTT, 11);
	CHECK_EQ(c->largest_pn[KW_QUIC_SPACE_APP], 11);
	CHECK_EQ(c->largest_pn[KW_QUIC_SPACE_INITIAL], 0);
	kw_quic_table_free(t);
}

int main(void)
{
	test_add_find_remove();
	test_cid_lengths();
	test_keys();
	test_received();
	CHECK_DONE();
}
