/*
 * test_classify.c - every classifier verdict:
 * needs crypto (long and short headers, a new client Initial), pass
 * (Version Negotiation, Retry), send Version Negotiation, and each drop
 * reason, with truncated and hostile packets; the counters add up.
 */
#include <errno.h>

#include <openssl/rand.h>

#include "check.h"
#include "quic_test.h"

#include "keyway/err.h"

static const uint8_t cid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
static uint64_t expect_verdict[KW_QUIC_VERDICT_COUNT], expect_drop[KW_QUIC_DROP_COUNT];

static void expect(struct kw_quic_table *t, const uint8_t *p, size_t len, size_t dgram_len,
                   enum kw_quic_verdict v, enum kw_quic_drop why, struct kw_quic_class *c)
{
	CHECK_EQ(kw_quic_classify(t, p, len, dgram_len, c), v);
	CHECK_EQ(c->drop, why);
	expect_verdict[v]++;
	if (v == KW_QUIC_VERDICT_DROP)
		expect_drop[why]++;
}

/* seal_short writes a protected short header packet for cid with pn and payload_len. */
static size_t seal_short(struct kw_quic_engine *e, struct kw_quic_key *k, uint8_t *b, uint8_t first,
                         uint64_t pn, size_t payload_len)
{
	b[0] = first | 1; /* 2-byte packet number */
	memcpy(b + 1, cid, 8);
	b[9] = (uint8_t)(pn >> 8), b[10] = (uint8_t)pn;
	memset(b + 11, 0xab, payload_len);
	struct kw_quic_pkt p = {.buf = b,
	                        .len = 11 + payload_len,
	                        .hdr_len = 11,
	                        .pn = pn,
	                        .key = k,
	                        .dir = KW_QUIC_DIR_SEAL};
	kw_quic_engine_run(e, &p, 1);
	CHECK_EQ(p.status, 0);
	return p.out_len;
}

static void test_verdicts(struct kw_quic_engine *e)
{
	static uint8_t b[2048], d[2048];
	struct kw_quic_table *t;
	struct kw_quic_conn *conn;
	struct kw_quic_class c;
	struct kw_quic_key *k;
	uint8_t secret[32] = {9};
	int n;

	CHECK_EQ(kw_quic_table_new(&t, 8, 16), 0);
	CHECK_EQ(kw_quic_table_add(t, cid, 8, 77, &conn), 0);
	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	kw_quic_conn_set_key(conn, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 0, k);
	kw_quic_conn_set_key(conn, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 1, k);

	/* Short header of a known connection: opened with the table's key and largest. */
	size_t len = seal_short(e, k, b, 0x40, 300, 40);
	expect(t, b, len, len, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	CHECK(c.conn == conn && c.level == KW_QUIC_LEVEL_1RTT && c.h.pkt_len == len);
	struct kw_quic_pkt p;
	memcpy(d, b, len);
	kw_quic_class_pkt(&c, d, &p);
	CHECK(p.key == k && p.conn == 77 && p.largest_pn == UINT64_MAX);
	CHECK_EQ(kw_quic_engine_run(e, &p, 1), 1);
	CHECK_EQ(p.pn, 300);
	kw_quic_conn_received(conn, c.level, p.pn);
	CHECK_EQ(conn->largest_pn[KW_QUIC_SPACE_APP], 300);
	/* The next one decodes against 300: 0x0140 + 0x100 = 576 (2-byte window). */
	len = seal_short(e, k, b, 0x40, 576, 40);
	expect(t, b, len, len, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	memcpy(d, b, len);
	kw_quic_class_pkt(&c, d, &p);
	CHECK(p.largest_pn == 300 && kw_quic_engine_run(e, &p, 1) == 1 && p.pn == 576);

	/* Short-header drops. */
	expect(t, b, 0, 0, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	expect(t, NULL, 5, 5, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	expect(t, b, 8, 8, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	expect(t, b, 28, 28, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_NO_SAMPLE, &c);
	len = seal_short(e, k, b, 0x00, 301, 40);
	expect(t, b, len, len, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_FIXED_BIT, &c);
	conn->grease_quic_bit = true;
	expect(t, b, len, len, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	conn->grease_quic_bit = false;
	b[1] ^= 0xff;
	expect(t, b, len, len, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_UNKNOWN_CONN, &c);

	/* Long headers: a known connection without Handshake keys, an unknown one. */
	uint8_t hs[64] = {0xe1, 0, 0, 0, 1, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x40, 40};
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_NO_KEY, &c);
	CHECK(c.conn == conn && c.level == KW_QUIC_LEVEL_HANDSHAKE);
	kw_quic_conn_set_key(conn, KW_QUIC_LEVEL_HANDSHAKE, KW_QUIC_DIR_OPEN, 0, k);
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	CHECK_EQ(c.h.pn_offset, 17);
	hs[16] = 10; /* Length too short for a sample */
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_NO_SAMPLE, &c);
	hs[16] = 60; /* Length past the datagram */
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	hs[16] = 40, hs[6] = 0xee;
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_UNKNOWN_CONN, &c);
	hs[0] = 0xd1, hs[6] = 1; /* 0-RTT */
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_NO_KEY, &c);
	CHECK_EQ(c.level, KW_QUIC_LEVEL_0RTT);
	hs[0] = 0xa1; /* fixed bit clear */
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_FIXED_BIT, &c);
	hs[5] = 21; /* a v1 connection ID over 20 bytes */
	expect(t, hs, 57, 57, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	expect(t, hs, 3, 3, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);

	/* Versions: negotiation packets pass; unknown versions get one if big enough. */
	uint8_t vn[1300] = {0x80, 0, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0, 0, 1};
	expect(t, vn, 19, 19, KW_QUIC_VERDICT_PASS, KW_QUIC_DROP_NONE, &c);
	vn[4] = 0x0a, vn[1] = 0x0a;
	expect(t, vn, 1200, 1200, KW_QUIC_VERDICT_SEND_VN, KW_QUIC_DROP_NONE, &c);
	CHECK(c.h.dcid_len == 8 && c.h.scid_len == 0);
	expect(t, vn, 1199, 1199, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_SMALL_UNKNOWN, &c);
	vn[5] = 200; /* the invariants allow long IDs, but not past the end */
	expect(t, vn, 100, 1200, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);

	/* Retry (RFC 9001 A.4) passes; with the fixed bit clear it drops. */
	uint8_t retry[64];
	n = unhex(retry, sizeof(retry),
	          "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829"
	          "058fb3f0f2496ba");
	expect(t, retry, (size_t)n, (size_t)n, KW_QUIC_VERDICT_PASS, KW_QUIC_DROP_NONE, &c);
	retry[0] = 0xbf;
	expect(t, retry, (size_t)n, (size_t)n, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_FIXED_BIT, &c);

	/* A new client's Initial (A.2): crypto with keys from its DCID. */
	n = vec("a2_packet", b, sizeof(b));
	expect(t, b, (size_t)n, (size_t)n, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	CHECK(c.conn == NULL && c.level == KW_QUIC_LEVEL_INITIAL && c.h.pkt_len == 1200);
	struct kw_quic_initial in;
	struct kw_quic_key *ck;
	CHECK_EQ(kw_quic_initial_secrets(&in, c.h.dcid, c.h.dcid_len), 0);
	CHECK_EQ(kw_quic_key_new(&ck, KW_QUIC_CIPHER_AES_128_GCM, in.client, 32), 0);
	memcpy(d, b, (size_t)n);
	kw_quic_class_pkt(&c, d, &p);
	p.key = ck;
	CHECK(kw_quic_engine_run(e, &p, 1) == 1 && p.pn == 2 && p.out_len == 1162);
	kw_quic_key_unref(ck);
	expect(t, b, (size_t)n, 1199, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_SMALL_INITIAL, &c);
	expect(t, b, 1199, 1199, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_MALFORMED, &c);
	b[0] &= ~0x40;
	expect(t, b, (size_t)n, (size_t)n, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_FIXED_BIT, &c);
	b[0] |= 0x40;
	b[16] = 0x40, b[17] = 10; /* Length 10: no sample */
	expect(t, b, (size_t)n, (size_t)n, KW_QUIC_VERDICT_DROP, KW_QUIC_DROP_NO_SAMPLE, &c);

	/* Coalesced: the server Initial (A.3) then a short header, one datagram. */
	int l3 = vec("a3_packet", d, sizeof(d));
	len = seal_short(e, k, d + l3, 0x40, 900, 30);
	CHECK_EQ(kw_quic_table_add(t, (const uint8_t *)"", 0, 5, &conn), 0);
	kw_quic_conn_set_key(conn, KW_QUIC_LEVEL_INITIAL, KW_QUIC_DIR_OPEN, 0, k);
	expect(t, d, l3 + len, l3 + len, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	CHECK(c.conn == conn && c.h.pkt_len == (size_t)l3);
	expect(t, d + l3, len, l3 + len, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE, &c);
	CHECK(c.conn != NULL && c.conn->id == 77);

	/* Hostile input: any bytes are a verdict, and the counters add up. */
	for (int i = 0; i < 20000; i++) {
		size_t l = (size_t)(i % 90);
		RAND_bytes(b, (int)l + 1);
		if (i % 3 == 0)
			b[0] = (uint8_t)(0xc0 | (b[0] & 0x30)), b[1] = b[2] = b[3] = 0, b[4] = 1;
		if (i % 7 == 0)
			memcpy(b + 1, cid, 8);
		struct kw_quic_class hc;
		enum kw_quic_verdict v = kw_quic_classify(t, b, l, l, &hc);
		expect_verdict[v]++;
		if (v == KW_QUIC_VERDICT_DROP)
			expect_drop[hc.drop]++;
		CHECK(v != KW_QUIC_VERDICT_NEEDS_CRYPTO || hc.h.pn_offset + 20 <= hc.h.pkt_len);
		CHECK(hc.h.pkt_len <= l);
	}
	struct kw_quic_table_stats st;
	kw_quic_table_stats(t, &st);
	for (int v = 0; v < KW_QUIC_VERDICT_COUNT; v++)
		CHECK_EQ(st.verdict[v], expect_verdict[v]);
	for (int r = 0; r < KW_QUIC_DROP_COUNT; r++) {
		CHECK_EQ(st.drop[r], expect_drop[r]);
		if (r != KW_QUIC_DROP_NONE)
			CHECK(st.drop[r] > 0); /* every reason was seen */
	}
	kw_quic_key_unref(k);
	kw_quic_table_free(t);
}

int main(void)
{
	struct kw_quic_engine *e;

	CHECK_EQ(kw_quic_engine_new(&e, "evp"), 0);
	test_verdicts(e);
	kw_quic_engine_free(e);
	CHECK_DONE();
}
