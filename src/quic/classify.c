/*
 * classify.c - the packet classifier: from the first byte, the version and
 * the connection table, what one packet of a datagram needs (RFC 9000 §5.2,
 * §6, §14.1, §17; RFC 9001 §5.4.2). Every verdict and drop is counted.
 */
#include <string.h>

#include "table.h"

#define MIN_DATAGRAM 1200 /* RFC 9000 §14.1 */

static const enum kw_quic_level long_level[3] = {KW_QUIC_LEVEL_INITIAL, KW_QUIC_LEVEL_0RTT,
                                                 KW_QUIC_LEVEL_HANDSHAKE};

static enum kw_quic_verdict verdict(struct kw_quic_table *t, struct kw_quic_class *out,
                                    enum kw_quic_verdict v, enum kw_quic_drop why)
{
	out->verdict = v;
	out->drop = why;
	t->stats.verdict[v]++;
	if (v == KW_QUIC_VERDICT_DROP)
		t->stats.drop[why]++;
	return v;
}

static enum kw_quic_verdict drop(struct kw_quic_table *t, struct kw_quic_class *out,
                                 enum kw_quic_drop why)
{
	return verdict(t, out, KW_QUIC_VERDICT_DROP, why);
}

/* protected decides a packet with keys: connection, fixed bit, key, sample. */
static enum kw_quic_verdict protected(struct kw_quic_table *t, const uint8_t *p,
                                      struct kw_quic_class *out) {
	struct kw_quic_conn *c = out->conn; bool fixed = p[0] & 0x40;

	if (c == NULL) return drop(t, out, KW_QUIC_DROP_UNKNOWN_CONN);
	if (!fixed && !c->grease_quic_bit) return drop(t, out, KW_QUIC_DROP_FIXED_BIT);
	if (c->rx[out->level][0] == NULL &&
	    c->rx[out->level][1] == NULL) return drop(t, out, KW_QUIC_DROP_NO_KEY);
	if (out->h.pn_offset + 4 + KW_QUIC_SAMPLE_LEN >
	    out->h.pkt_len) return drop(t, out, KW_QUIC_DROP_NO_SAMPLE);
	return verdict(t, out, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE);
}

static enum kw_quic_verdict classify_long(struct kw_quic_table *t, const uint8_t *p, size_t len,
                                          size_t dgram_len, struct kw_quic_class *out)
{
	struct kw_quic_header *h = &out->h;

	if (kw_quic_header_parse(h, p, len, t->cid_len) < 0)
		return drop(t, out, KW_QUIC_DROP_MALFORMED);
	if (h->version == 0)
		return verdict(t, out, KW_QUIC_VERDICT_PASS, KW_QUIC_DROP_NONE);
	if (h->version != KW_QUIC_V1)
		return dgram_len >= MIN_DATAGRAM
		           ? verdict(t, out, KW_QUIC_VERDICT_SEND_VN, KW_QUIC_DROP_NONE)
		           : drop(t, out, KW_QUIC_DROP_SMALL_UNKNOWN);
	out->conn = kw_quic_table_find(t, h->dcid, h->dcid_len);
	if (h->type == 3) {
		/* Retry: integrity-tagged, not packet-protected; the stack checks it. */
		if (!(p[0] & 0x40) && (out->conn == NULL || !out->conn->grease_quic_bit))
			return drop(t, out, KW_QUIC_DROP_FIXED_BIT);
		return verdict(t, out, KW_QUIC_VERDICT_PASS, KW_QUIC_DROP_NONE);
	}
	out->level = long_level[h->type];
	if (out->conn == NULL && out->level == KW_QUIC_LEVEL_INITIAL) {
		/* A new client: its keys come from the DCID (kw_quic_initial_secrets). */
		if (!(p[0] & 0x40))
			return drop(t, out, KW_QUIC_DROP_FIXED_BIT);
		if (dgram_len < MIN_DATAGRAM)
			return drop(t, out, KW_QUIC_DROP_SMALL_INITIAL);
		if (h->pn_offset + 4 + KW_QUIC_SAMPLE_LEN > h->pkt_len)
			return drop(t, out, KW_QUIC_DROP_NO_SAMPLE);
		return verdict(t, out, KW_QUIC_VERDICT_NEEDS_CRYPTO, KW_QUIC_DROP_NONE);
	}
	return protected(t, p, out);
}

enum kw_quic_verdict kw_quic_classify(struct kw_quic_table *t, const uint8_t *dgram, size_t len,
                                      size_t dgram_len, struct kw_quic_class *out)
{
	memset(out, 0, sizeof(*out));
	if (dgram == NULL || len == 0)
		return drop(t, out, KW_QUIC_DROP_MALFORMED);
	if (dgram[0] & 0x80)
		return classify_long(t, dgram, len, dgram_len, out);
	if (kw_quic_header_parse(&out->h, dgram, len, t->cid_len) < 0)
		return drop(t, out, KW_QUIC_DROP_MALFORMED);
	out->level = KW_QUIC_LEVEL_1RTT;
	out->conn = kw_quic_table_find(t, out->h.dcid, out->h.dcid_len);
	return protected(t, dgram, out);
}
