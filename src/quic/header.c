/*
 * header.c - reading QUIC packet headers (RFC 9000 §17) through a bounds-
 * checked cursor, and packet-number reconstruction (RFC 9000 §A.3).
 */
#include <errno.h>
#include <string.h>

#include "keyway/quic.h"

#define PN_MAX ((1ull << 62) - 1)

uint64_t kw_quic_pn_decode(uint64_t largest_pn, uint64_t truncated, unsigned pn_len)
{
	uint64_t expected = largest_pn == UINT64_MAX ? 0 : largest_pn + 1;
	uint64_t win = 1ull << (pn_len * 8), hwin = win / 2, mask = win - 1;
	uint64_t candidate = (expected & ~mask) | truncated;

	if (candidate + hwin <= expected && candidate < (1ull << 62) - win)
		return candidate + win;
	if (candidate > expected + hwin && candidate >= win)
		return candidate - win;
	return candidate;
}

struct cursor {
	const uint8_t *p;
	size_t off, len;
};

static int take(struct cursor *c, size_t n, const uint8_t **out)
{
	if (n > c->len - c->off)
		return -EINVAL;
	if (out != NULL)
		*out = c->p + c->off;
	c->off += n;
	return 0;
}

static int take_u8(struct cursor *c, uint8_t *v)
{
	const uint8_t *b;
	if (take(c, 1, &b) < 0)
		return -EINVAL;
	*v = b[0];
	return 0;
}

/* take_varint reads a variable-length integer (RFC 9000 §16). */
static int take_varint(struct cursor *c, uint64_t *v)
{
	const uint8_t *b;
	if (take(c, 1, &b) < 0)
		return -EINVAL;
	size_t n = (size_t)1 << (b[0] >> 6);
	*v = b[0] & 0x3f;
	if (n > 1) {
		const uint8_t *rest;
		if (take(c, n - 1, &rest) < 0)
			return -EINVAL;
		for (size_t i = 0; i < n - 1; i++)
			*v = (*v << 8) | rest[i];
	}
	return 0;
}

/* take_cid reads a one-byte length and a connection ID of at most max bytes. */
static int take_cid(struct cursor *c, size_t max, const uint8_t **cid, uint8_t *cid_len)
{
	if (take_u8(c, cid_len) < 0 || *cid_len > max)
		return -EINVAL;
	return take(c, *cid_len, cid);
}

static int parse_long(struct kw_quic_header *h, struct cursor *c)
{
	const uint8_t *v;
	uint64_t token_len, length;

	if (take(c, 4, &v) < 0)
		return -EINVAL;
	h->version = (uint32_t)v[0] << 24 | (uint32_t)v[1] << 16 | (uint32_t)v[2] << 8 | v[3];
	/* v1 caps connection IDs at 20 bytes; the invariants (RFC 8999) allow 255. */
	size_t max = h->version == KW_QUIC_V1 ? KW_QUIC_CID_MAX : 255;
	if (take_cid(c, max, &h->dcid, &h->dcid_len) < 0 ||
	    take_cid(c, max, &h->scid, &h->scid_len) < 0)
		return -EINVAL;
	h->type = (c->p[0] >> 4) & 3;
	h->pkt_len = c->len;
	if (h->version != KW_QUIC_V1 || h->type == 3)
		return 0; /* Version Negotiation, unknown versions and Retry end here */
	if (h->type == 0) {
		if (take_varint(c, &token_len) < 0 || take(c, token_len, &h->token) < 0)
			return -EINVAL;
		h->token_len = token_len;
	}
	if (take_varint(c, &length) < 0 || length > c->len - c->off)
		return -EINVAL;
	h->pn_offset = c->off;
	h->pkt_len = c->off + length;
	return 0;
}

int kw_quic_header_parse(struct kw_quic_header *h, const uint8_t *p, size_t len, size_t dcid_len)
{
	struct cursor c = {p, 0, len};
	uint8_t b0;

	memset(h, 0, sizeof(*h));
	if (p == NULL || take_u8(&c, &b0) < 0)
		return -EINVAL;
	h->long_header = b0 & 0x80;
	if (h->long_header)
		return parse_long(h, &c);
	if (dcid_len > KW_QUIC_CID_MAX || take(&c, dcid_len, &h->dcid) < 0)
		return -EINVAL;
	h->dcid_len = (uint8_t)dcid_len;
	h->pn_offset = c.off;
	h->pkt_len = len;
	return 0;
}
