/*
 * test_rxbatch.c - the receive batch's pre-opened packets and the checks
 * that decide whether ngtcp2's callbacks may take them: a packet is found
 * only at its own address, for its own connection, with its header
 * protection off; its result is the answer only for the same key object,
 * packet number, ciphertext and associated data. Key phases without a key,
 * a packet number decoded differently, tampered and short packets, a full
 * batch, and that clearing drops every key reference (ASan's leak check).
 */
#include <string.h>

#include <openssl/rand.h>

#include "check.h"
#include "quic_rxbatch.h"

#include "keyway/err.h"

#define CID_LEN 16
#define PN_OFF (1 + CID_LEN)

static struct kw_quic_engine *engine;

static size_t run_engine(void *arg, struct kw_quic_pkt *pkts, size_t n)
{
	return kw_quic_engine_run(arg, pkts, n);
}

/*
 * seal_short writes a sealed short-header packet of payload_len random
 * bytes (copied to plain) with packet number pn (pn_len bytes on the wire)
 * and key phase bit phase under k into out; returns its length.
 */
static size_t seal_short(uint8_t *out, struct kw_quic_key *k, unsigned phase, uint64_t pn,
                         unsigned pn_len, size_t payload_len, uint8_t *plain)
{
	size_t h = 0;
	out[h++] = (uint8_t)(0x40 | (phase << 2) | (pn_len - 1));
	memset(out + h, 0xab, CID_LEN), h += CID_LEN;
	for (unsigned i = 0; i < pn_len; i++)
		out[h++] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));
	RAND_bytes(out + h, (int)payload_len);
	memcpy(plain, out + h, payload_len);
	struct kw_quic_pkt p = {.buf = out,
	                        .len = h + payload_len,
	                        .hdr_len = h,
	                        .pn = pn,
	                        .key = k,
	                        .dir = KW_QUIC_DIR_SEAL};
	CHECK_EQ(kw_quic_engine_run(engine, &p, 1), 1);
	return p.out_len;
}

static struct kw_quic_key *new_key(void)
{
	uint8_t secret[32];
	struct kw_quic_key *k = NULL;
	RAND_bytes(secret, sizeof(secret));
	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, sizeof(secret)), 0);
	return k;
}

/* A datagram buffer as the receive path holds it. */
static uint8_t dgram[4][1500];
static uint8_t plain[4][1500];

static void test_match_and_mismatch(void)
{
	struct kw_quic_key *k0 = new_key(), *k1 = NULL;
	CHECK_EQ(kw_quic_key_next(&k1, k0), 0);
	struct kpx_rxb *b = kpx_rxb_new(KPX_RXB_SCRATCH);
	int A, B; /* two connections: only their addresses matter */

	size_t l0 = seal_short(dgram[0], k0, 0, 100, 2, 1000, plain[0]);
	size_t l1 = seal_short(dgram[1], k1, 1, 101, 2, 500, plain[1]);
	size_t l2 = seal_short(dgram[2], k0, 0, 102, 4, 300, plain[2]);
	dgram[2][l2 - 3] ^= 1; /* tampered: in the tag */
	size_t l3 = seal_short(dgram[3], k0, 0, 300, 1, 200, plain[3]);
	CHECK(kpx_rxb_add(b, &A, dgram[0], l0, PN_OFF, 99, k0, k1));
	CHECK(kpx_rxb_add(b, &B, dgram[1], l1, PN_OFF, 99, k0, k1));
	CHECK(kpx_rxb_add(b, &A, dgram[2], l2, PN_OFF, 99, k0, k1));
	/* Packet number 300 sent in one byte (44): decoded against 10, the engine gets 44. */
	CHECK(kpx_rxb_add(b, &A, dgram[3], l3, PN_OFF, 10, k0, k1));
	CHECK_EQ(kpx_rxb_run(b, run_engine, engine), 2);

	/* Found at its own address for its own connection only. */
	struct kpx_rxb_ent *e = kpx_rxb_find(b, &A, dgram[0], l0, PN_OFF);
	CHECK(e != NULL);
	CHECK(kpx_rxb_find(b, &B, dgram[0], l0, PN_OFF) == NULL);
	CHECK(kpx_rxb_find(b, &A, dgram[0], l0 - 1, PN_OFF) == NULL);
	uint8_t copy[1500];
	memcpy(copy, dgram[0], l0);
	CHECK(kpx_rxb_find(b, &A, copy, l0, PN_OFF) == NULL);
	CHECK(kpx_rxb_find(b, &A, dgram[0], l0, PN_OFF + 1) == NULL);
	if (e != NULL) {
		size_t hl = PN_OFF + 2;
		CHECK_EQ(e->status, 0);
		CHECK_EQ(e->hdr_len, hl);
		CHECK_EQ(e->pn, 100);
		CHECK_EQ(e->out_len, 1000);
		CHECK(memcmp(e->buf + hl, plain[0], 1000) == 0);
		const uint8_t *ct = dgram[0] + hl;
		size_t ctl = l0 - hl;
		uint8_t aad[64];
		memcpy(aad, e->buf, hl); /* ngtcp2's own unprotected header */
		CHECK(kpx_rxb_matches(e, k0, 100, ct, ctl, aad, hl));
		CHECK(!kpx_rxb_matches(e, k1, 100, ct, ctl, aad, hl));         /* another key */
		CHECK(!kpx_rxb_matches(e, k0, 101, ct, ctl, aad, hl));         /* another nonce */
		CHECK(!kpx_rxb_matches(e, k0, 100, ct + 1, ctl - 1, aad, hl)); /* elsewhere */
		CHECK(!kpx_rxb_matches(e, k0, 100, ct, ctl - 1, aad, hl));
		CHECK(!kpx_rxb_matches(e, k0, 100, copy + hl, ctl, aad, hl)); /* a copy */
		aad[hl - 1] ^= 1;
		CHECK(!kpx_rxb_matches(e, k0, 100, ct, ctl, aad, hl)); /* another header */
		e->taken = true;
	}

	/* Key phase 1 opened with the next key: that key, and no other, matches. */
	e = kpx_rxb_find(b, &B, dgram[1], l1, PN_OFF);
	CHECK(e != NULL);
	if (e != NULL) {
		CHECK_EQ(e->status, 0);
		CHECK(e->key == k1);
		CHECK(memcmp(e->buf + e->hdr_len, plain[1], 500) == 0);
		CHECK(kpx_rxb_matches(e, k1, 101, dgram[1] + e->hdr_len, l1 - e->hdr_len, e->buf,
		                      e->hdr_len));
		CHECK(!kpx_rxb_matches(e, k0, 101, dgram[1] + e->hdr_len, l1 - e->hdr_len, e->buf,
		                       e->hdr_len));
	}

	/* Tampered: header protection came off, authentication failed; the same open
	 * (same key, nonce, bytes) is answered as the failure it is. */
	e = kpx_rxb_find(b, &A, dgram[2], l2, PN_OFF);
	CHECK(e != NULL);
	if (e != NULL) {
		CHECK_EQ(e->status, -KW_ECRYPTO);
		CHECK_EQ(e->pn, 102);
		CHECK(kpx_rxb_matches(e, k0, 102, dgram[2] + e->hdr_len, l2 - e->hdr_len, e->buf,
		                      e->hdr_len));
	}

	/* Decoded against an older largest packet number: the engine's 44 is not ngtcp2's 300,
	 * so the failure it saw is not the answer (the packet is opened again alone). */
	e = kpx_rxb_find(b, &A, dgram[3], l3, PN_OFF);
	CHECK(e != NULL);
	if (e != NULL) {
		CHECK_EQ(e->pn, 44);
		CHECK(e->status != 0);
		CHECK(!kpx_rxb_matches(e, k0, 300, dgram[3] + e->hdr_len, l3 - e->hdr_len, e->buf,
		                       e->hdr_len));
	}
	CHECK_EQ(kpx_rxb_unused(b), 3);
	kpx_rxb_clear(b);
	CHECK(kpx_rxb_find(b, &A, dgram[0], l0, PN_OFF) == NULL);
	CHECK_EQ(kpx_rxb_unused(b), 0);
	kpx_rxb_free(b);
	kw_quic_key_unref(k0);
	kw_quic_key_unref(k1);
}

/* A key phase with no key: the header comes off (a mask for ngtcp2), no result matches. */
static void test_missing_phase(void)
{
	struct kw_quic_key *k0 = new_key(), *k1 = NULL;
	CHECK_EQ(kw_quic_key_next(&k1, k0), 0);
	struct kpx_rxb *b = kpx_rxb_new(KPX_RXB_SCRATCH);
	int A;
	size_t l = seal_short(dgram[0], k1, 1, 7, 2, 100, plain[0]);
	CHECK(kpx_rxb_add(b, &A, dgram[0], l, PN_OFF, 6, k0, NULL));
	CHECK_EQ(kpx_rxb_run(b, run_engine, engine), 0);
	struct kpx_rxb_ent *e = kpx_rxb_find(b, &A, dgram[0], l, PN_OFF);
	CHECK(e != NULL);
	if (e != NULL) {
		CHECK_EQ(e->status, -KW_ENOKEY);
		CHECK(e->key == NULL);
		CHECK(!kpx_rxb_matches(e, k1, 7, dgram[0] + e->hdr_len, l - e->hdr_len, e->buf,
		                       e->hdr_len));
	}
	kpx_rxb_free(b); /* frees with entries: no reference leaks */
	kw_quic_key_unref(k0);
	kw_quic_key_unref(k1);
}

/* What is not taken: no key at all, too short for a sample, no room left. */
static void test_limits(void)
{
	struct kw_quic_key *k0 = new_key();
	struct kpx_rxb *b = kpx_rxb_new(3000);
	int A;
	size_t l = seal_short(dgram[0], k0, 0, 1, 4, 1200, plain[0]);
	CHECK(!kpx_rxb_add(b, &A, dgram[0], l, PN_OFF, 0, NULL, NULL));
	CHECK(!kpx_rxb_add(b, &A, dgram[0], PN_OFF + 4 + KW_QUIC_SAMPLE_LEN - 1, PN_OFF, 0, k0,
	                   NULL));
	CHECK(kpx_rxb_add(b, &A, dgram[0], l, PN_OFF, 0, k0, NULL));
	CHECK(kpx_rxb_add(b, &A, dgram[0], l, PN_OFF, 0, k0, NULL));
	CHECK(!kpx_rxb_add(b, &A, dgram[0], l, PN_OFF, 0, k0, NULL)); /* scratch full */
	kpx_rxb_clear(b);                                             /* before any run */
	kpx_rxb_free(b);

	b = kpx_rxb_new(KPX_RXB_SCRATCH);
	size_t n = 0;
	while (kpx_rxb_add(b, &A, dgram[0], PN_OFF + 40, PN_OFF, 0, k0, NULL))
		n++;
	CHECK_EQ(n, KPX_RXB_MAX);
	kpx_rxb_free(b);
	kw_quic_key_unref(k0);
}

int main(void)
{
	CHECK_EQ(kw_quic_engine_new(&engine, "evp"), 0);
	if (engine == NULL)
		return 1;
	test_match_and_mismatch();
	test_missing_phase();
	test_limits();
	kw_quic_engine_free(engine);
	CHECK_DONE();
}
