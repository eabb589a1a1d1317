/*
 * test_header.c - header.c: long and short header fields (RFC 9000 §17) on
 * the RFC 9001 Appendix A packets and built ones, refusal of truncated and
 * malformed headers, and packet-number reconstruction (RFC 9000 §A.3).
 */
#include <errno.h>

#include "check.h"
#include "quic_test.h"

static uint8_t pkt[2048];

/* parse_ok parses p and checks the fields every header has. */
static struct kw_quic_header parse_ok(const uint8_t *p, size_t len, size_t dcid_len)
{
	struct kw_quic_header h;
	CHECK_EQ(kw_quic_header_parse(&h, p, len, dcid_len), 0);
	return h;
}

/* Every proper prefix of the first n header bytes is refused, never over-read. */
static void check_prefixes_refused(const uint8_t *p, size_t n, size_t dcid_len)
{
	struct kw_quic_header h;
	for (size_t len = 0; len < n; len++) {
		uint8_t *copy = malloc(len ? len : 1); /* exact size: ASan sees any over-read */
		memcpy(copy, p, len);
		if (kw_quic_header_parse(&h, copy, len, dcid_len) != -EINVAL)
			fprintf(stderr, "prefix of %zu bytes accepted\n", len);
		CHECK_EQ(kw_quic_header_parse(&h, copy, len, dcid_len), -EINVAL);
		free(copy);
	}
}

static void test_rfc9001_packets(void)
{
	uint8_t want[8];

	/* A.2: the client Initial, 8-byte DCID, no SCID, no token, Length 1182. */
	int n = vec("a2_packet", pkt, sizeof(pkt));
	CHECK_EQ(n, 1200);
	struct kw_quic_header h = parse_ok(pkt, (size_t)n, 8);
	CHECK(h.long_header);
	CHECK_EQ(h.type, 0);
	CHECK_EQ(h.version, KW_QUIC_V1);
	CHECK_EQ(h.dcid_len, 8);
	CHECK(vec("dcid", want, sizeof(want)) == 8 && memcmp(h.dcid, want, 8) == 0);
	CHECK_EQ(h.scid_len, 0);
	CHECK_EQ(h.token_len, 0);
	CHECK_EQ(h.pn_offset, 18);
	CHECK_EQ(h.pkt_len, 1200);
	check_prefixes_refused(pkt, h.pn_offset, 8);
	/* One byte short of its Length: refused. */
	CHECK_EQ(kw_quic_header_parse(&h, pkt, 1199, 8), -EINVAL);

	/* A.3: the server Initial, empty DCID, 8-byte SCID, Length 117. */
	n = vec("a3_packet", pkt, sizeof(pkt));
	CHECK_EQ(n, 135);
	h = parse_ok(pkt, (size_t)n, 0);
	CHECK(h.long_header && h.type == 0 && h.version == KW_QUIC_V1);
	CHECK_EQ(h.dcid_len, 0);
	CHECK_EQ(h.scid_len, 8);
	CHECK(unhex(want, 8, "f067a5502a4262b5") == 8 && memcmp(h.scid, want, 8) == 0);
	CHECK_EQ(h.pn_offset, 18);
	CHECK_EQ(h.pkt_len, 135);

	/* A.5: a short header with an empty DCID. */
	n = vec("a5_packet", pkt, sizeof(pkt));
	h = parse_ok(pkt, (size_t)n, 0);
	CHECK(!h.long_header);
	CHECK_EQ(h.dcid_len, 0);
	CHECK_EQ(h.pn_offset, 1);
	CHECK_EQ(h.pkt_len, n);
}

static void test_long_headers(void)
{
	/* An Initial with a 5-byte token and 3 bytes after Length, then a coalesced packet. */
	int n = unhex(pkt, sizeof(pkt),
	              "c000000001"
	              "04aabbccdd"
	              "021122"
	              "050102030405"
	              "03"
	              "a1a2a3"
	              "40");
	struct kw_quic_header h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.type, 0);
	CHECK(h.dcid == pkt + 6 && h.dcid_len == 4);
	CHECK(h.scid == pkt + 11 && h.scid_len == 2);
	CHECK(h.token == pkt + 14 && h.token_len == 5);
	CHECK_EQ(h.pn_offset, 20);
	CHECK_EQ(h.pkt_len, 23); /* the next packet starts here */
	check_prefixes_refused(pkt, 20, 8);

	/* 0-RTT and Handshake: no token; an 8-byte varint Length. */
	n = unhex(pkt, sizeof(pkt),
	          "d00000000101aa00"
	          "c000000000000002"
	          "bbcc");
	h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.type, 1);
	CHECK(h.token == NULL && h.token_len == 0);
	CHECK_EQ(h.pn_offset, 16);
	CHECK_EQ(h.pkt_len, 18);
	pkt[0] = 0xe0;
	h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.type, 2);
	CHECK_EQ(h.pkt_len, 18);

	/* Retry: the fields after the CIDs are not read; no packet number. */
	n = unhex(pkt, sizeof(pkt),
	          "f00000000101aa01bb"
	          "746f6b656e");
	h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.type, 3);
	CHECK_EQ(h.pn_offset, 0);
	CHECK_EQ(h.pkt_len, n);

	/* Version Negotiation (version 0) and unknown versions: CIDs up to 255 bytes. */
	n = unhex(pkt, sizeof(pkt),
	          "8000000000"
	          "15000102030405060708090a0b0c0d0e0f1011121314"
	          "00"
	          "00000001");
	h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.version, 0);
	CHECK_EQ(h.dcid_len, 21);
	CHECK_EQ(h.pn_offset, 0);
	CHECK_EQ(h.pkt_len, n);
	pkt[4] = 1; /* the same 21-byte DCID in a v1 packet */
	CHECK_EQ(kw_quic_header_parse(&h, pkt, (size_t)n, 8), -EINVAL);

	/* A token or Length running past the datagram. */
	n = unhex(pkt, sizeof(pkt),
	          "c0000000010000"
	          "06aabbccdd");
	CHECK_EQ(kw_quic_header_parse(&h, pkt, (size_t)n, 8), -EINVAL);
	n = unhex(pkt, sizeof(pkt),
	          "c0000000010000"
	          "00"
	          "4005"
	          "aabbccdd");
	CHECK_EQ(kw_quic_header_parse(&h, pkt, (size_t)n, 8), -EINVAL);
	pkt[9] = 4;
	h = parse_ok(pkt, (size_t)n, 8);
	CHECK_EQ(h.pkt_len, 14);
}

static void test_short_headers(void)
{
	struct kw_quic_header h;
	int n = unhex(pkt, sizeof(pkt),
	              "41"
	              "0102030405060708"
	              "99aabb");

	h = parse_ok(pkt, (size_t)n, 8);
	CHECK(!h.long_header);
	CHECK(h.dcid == pkt + 1 && h.dcid_len == 8);
	CHECK_EQ(h.pn_offset, 9);
	CHECK_EQ(h.pkt_len, n);
	check_prefixes_refused(pkt, 9, 8);
	CHECK_EQ(kw_quic_header_parse(&h, pkt, (size_t)n, 21), -EINVAL);
	CHECK_EQ(kw_quic_header_parse(&h, NULL, 0, 0), -EINVAL);
}

static void test_pn_decode(void)
{
	/* RFC 9000 §A.3's example, and the edges of the window. */
	CHECK_EQ(kw_quic_pn_decode(0xa82f30ea, 0x9b32, 2), 0xa82f9b32);
	CHECK_EQ(kw_quic_pn_decode(UINT64_MAX, 0, 1), 0);
	CHECK_EQ(kw_quic_pn_decode(UINT64_MAX, 0xff, 1), 0xff);
	CHECK_EQ(kw_quic_pn_decode(300, 0x01, 1), 257);
	CHECK_EQ(kw_quic_pn_decode(255, 0x00, 1), 256);
	CHECK_EQ(kw_quic_pn_decode(256, 0xff, 1), 255);
	CHECK_EQ(kw_quic_pn_decode((1ull << 62) - 2, 0xff, 1), (1ull << 62) - 1);
	/* RFC 9001 A.5: 3 bytes 0x00bff4 after 654360563. */
	CHECK_EQ(kw_quic_pn_decode(654360563, 0x00bff4, 3), 654360564);
	/* The candidate closest to largest + 1 wins; exactly half a window away, the larger. */
	CHECK_EQ(kw_quic_pn_decode(0x10000, 0x8001, 2), 0x18001);
	CHECK_EQ(kw_quic_pn_decode(0x10000, 0x8002, 2), 0x8002);
	CHECK_EQ(kw_quic_pn_decode(0x10000, 0x7fff, 2), 0x17fff);
	CHECK_EQ(kw_quic_pn_decode(0x17fff, 0x0000, 2), 0x20000);
	CHECK_EQ(kw_quic_pn_decode(0x17fff, 0xffff, 2), 0x1ffff);
	CHECK_EQ(kw_quic_pn_decode(0xfffffffe, 0x00000001, 4), 0x100000001);
}

int main(void)
{
	test_rfc9001_packets();
	test_long_headers();
	test_short_headers();
	test_pn_decode();
	CHECK_DONE();
}
