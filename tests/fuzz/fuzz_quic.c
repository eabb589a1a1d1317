/*
 * fuzz_quic.c - libFuzzer harness for the QUIC classifier and unprotect.
 * The input is one datagram. Each coalesced packet is classified against a
 * table holding one connection (CID 0102030405060708, 1-RTT AES-128-GCM
 * secret 11..11 in both key phases, Handshake ChaCha20-Poly1305 secret
 * 22..22); what needs crypto is opened (new client Initials with keys from
 * their DCID). Whatever opens must account for every byte; anything the
 * classifier passes on must lie inside the datagram; else abort.
 */
#include <stdlib.h>
#include <string.h>

#include "keyway/quic.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct kw_quic_table *table;
static struct kw_quic_engine *engine;

static void setup(void)
{
	static const uint8_t cid[8] = {1, 2, 3, 4, 5, 6, 7, 8};
	uint8_t s1[32], s2[32];
	struct kw_quic_conn *c;
	struct kw_quic_key *k1, *k2;

	memset(s1, 0x11, sizeof(s1));
	memset(s2, 0x22, sizeof(s2));
	if (kw_quic_table_new(&table, 8, 4) < 0 || kw_quic_engine_new(&engine, "evp") < 0 ||
	    kw_quic_table_add(table, cid, 8, 1, &c) < 0 ||
	    kw_quic_key_new(&k1, KW_QUIC_CIPHER_AES_128_GCM, s1, 32) < 0 ||
	    kw_quic_key_new(&k2, KW_QUIC_CIPHER_CHACHA20_POLY1305, s2, 32) < 0)
		abort();
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 0, k1);
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_1RTT, KW_QUIC_DIR_OPEN, 1, k1);
	kw_quic_conn_set_key(c, KW_QUIC_LEVEL_HANDSHAKE, KW_QUIC_DIR_OPEN, 0, k2);
	kw_quic_key_unref(k1);
	kw_quic_key_unref(k2);
}

/* open_one unprotects a copy of the classified packet and checks the result's shape. */
static void open_one(const struct kw_quic_class *c, const uint8_t *p)
{
	static uint8_t buf[65536];
	struct kw_quic_key *initial = NULL;
	struct kw_quic_pkt pkt;

	memcpy(buf, p, c->h.pkt_len);
	kw_quic_class_pkt(c, buf, &pkt);
	if (c->conn == NULL) {
		struct kw_quic_initial in;
		if (kw_quic_initial_secrets(&in, c->h.dcid, c->h.dcid_len) < 0 ||
		    kw_quic_key_new(&initial, KW_QUIC_CIPHER_AES_128_GCM, in.client, 32) < 0)
			abort();
		pkt.key = initial;
	}
	kw_quic_engine_run(engine, &pkt, 1);
	if (pkt.status == 0 && (pkt.hdr_len + pkt.out_len + KW_QUIC_TAG_LEN != pkt.len ||
	                        pkt.hdr_len != pkt.pn_offset + 1 + (buf[0] & 3)))
		abort();
	if (pkt.status == 0 && c->conn != NULL)
		kw_quic_conn_received(c->conn, c->level, pkt.pn);
	kw_quic_key_unref(initial);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct kw_quic_class c;
	size_t off = 0;

	if (table == NULL)
		setup();
	if (size > 65535)
		return 0;
	do {
		enum kw_quic_verdict v = kw_quic_classify(table, data + off, size - off, size, &c);
		if (v == KW_QUIC_VERDICT_DROP || v == KW_QUIC_VERDICT_SEND_VN)
			break;
		if (c.h.pkt_len == 0 || c.h.pkt_len > size - off)
			abort();
		if (v == KW_QUIC_VERDICT_NEEDS_CRYPTO) {
			if (c.h.pn_offset + 20 > c.h.pkt_len)
				abort();
			open_one(&c, data + off);
		}
		off += c.h.pkt_len;
	} while (off < size && c.h.long_header);
	return 0;
}
