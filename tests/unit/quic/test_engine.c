/*
 * test_engine.c - the engines beyond the RFC vectors: random packets of
 * every cipher round trip within and across engines, every flipped bit
 * fails authentication, bad packets get a status (never a crash), key
 * phases pick the key, and the §6.6 counters report "must update".
 */
#include <errno.h>

#include <openssl/rand.h>

#include "check.h"
#include "quic_test.h"

#include "keyway/err.h"

#define N 40

static struct kw_quic_engine *engines[2];
static size_t n_engines;

/* make_packet writes a random long or short header packet; returns header length. */
static size_t make_packet(uint8_t *b, size_t payload_len, bool long_hdr, unsigned pn_len,
                          uint64_t pn, size_t *total)
{
	size_t h = 0;
	if (long_hdr) {
		b[h++] = 0xc0 | 0x20 | (uint8_t)(pn_len - 1); /* Handshake */
		b[h++] = 0, b[h++] = 0, b[h++] = 0, b[h++] = 1;
		b[h++] = 8;
		RAND_bytes(b + h, 8), h += 8;
		b[h++] = 0;
		size_t length = pn_len + payload_len + KW_QUIC_TAG_LEN;
		b[h++] = 0x40 | (uint8_t)(length >> 8), b[h++] = (uint8_t)length;
	} else {
		b[h++] = 0x40 | (uint8_t)(pn_len - 1);
		RAND_bytes(b + h, 8), h += 8;
	}
	for (unsigned i = 0; i < pn_len; i++)
		b[h++] = (uint8_t)(pn >> (8 * (pn_len - 1 - i)));
	RAND_bytes(b + h, (int)payload_len);
	*total = h + payload_len;
	return h;
}

static int open_copy(struct kw_quic_engine *e, struct kw_quic_key *k, const uint8_t *pkt,
                     size_t len, uint64_t largest, uint8_t *scratch, struct kw_quic_pkt *o)
{
	struct kw_quic_header h;
	memcpy(scratch, pkt, len);
	if (kw_quic_header_parse(&h, scratch, len, 8) < 0)
		return -EINVAL;
	*o = (struct kw_quic_pkt){.buf = scratch,
	                          .len = h.pkt_len,
	                          .pn_offset = h.pn_offset,
	                          .key = k,
	                          .key1 = k,
	                          .largest_pn = largest,
	                          .dir = KW_QUIC_DIR_OPEN};
	kw_quic_engine_run(e, o, 1);
	return o->status;
}

static void test_round_trips(enum kw_quic_cipher c)
{
	uint8_t secret[48], plain[1600], sealed[1600], scratch[1600];
	struct kw_quic_key *k;

	RAND_bytes(secret, sizeof(secret));
	CHECK_EQ(kw_quic_key_new(&k, c, secret, kw_quic_secret_len(c)), 0);
	for (int i = 0; i < N; i++) {
		size_t total, payload_len = 4 + (size_t)(i * 37) % 1400;
		unsigned pn_len = 1 + i % 4;
		uint64_t pn = 1000 + (uint64_t)i * 77;
		size_t hl = make_packet(plain, payload_len, i % 2, pn_len, pn, &total);
		for (size_t s = 0; s < n_engines; s++) {
			memcpy(sealed, plain, total);
			struct kw_quic_pkt p = {.buf = sealed,
			                        .len = total,
			                        .hdr_len = hl,
			                        .pn = pn,
			                        .key = k,
			                        .dir = KW_QUIC_DIR_SEAL};
			CHECK_EQ(kw_quic_engine_run(engines[s], &p, 1), 1);
			/* Every engine opens what every engine sealed, byte for byte. */
			for (size_t o = 0; o < n_engines; o++) {
				struct kw_quic_pkt r;
				CHECK_EQ(open_copy(engines[o], k, sealed, p.out_len, pn - 3,
				                   scratch, &r),
				         0);
				CHECK_EQ(r.pn, pn);
				CHECK_EQ(r.out_len, payload_len);
				CHECK(memcmp(scratch, plain, total) == 0);
			}
			if (s > 0) {
				uint8_t first[1600];
				memcpy(first, plain, total);
				struct kw_quic_pkt q = p;
				q.buf = first;
				kw_quic_engine_run(engines[0], &q, 1);
				CHECK(memcmp(first, sealed, p.out_len) == 0);
			}
		}
	}
	kw_quic_key_unref(k);
}

/* test_flipped_bits: every single-bit change of a sealed packet fails authentication. */
static void test_flipped_bits(enum kw_quic_cipher c, bool long_hdr)
{
	uint8_t secret[48], plain[256], sealed[256], bad[256], scratch[256];
	struct kw_quic_key *k;
	size_t total;

	RAND_bytes(secret, sizeof(secret));
	CHECK_EQ(kw_quic_key_new(&k, c, secret, kw_quic_secret_len(c)), 0);
	size_t hl = make_packet(plain, 40, long_hdr, 2, 77, &total);
	for (size_t e = 0; e < n_engines; e++) {
		int accepted = 0;
		memcpy(sealed, plain, total);
		struct kw_quic_pkt p = {.buf = sealed,
		                        .len = total,
		                        .hdr_len = hl,
		                        .pn = 77,
		                        .key = k,
		                        .dir = KW_QUIC_DIR_SEAL};
		kw_quic_engine_run(engines[e], &p, 1);
		for (size_t bit = 0; bit < 8 * p.out_len; bit++) {
			struct kw_quic_pkt r;
			memcpy(bad, sealed, p.out_len);
			bad[bit / 8] ^= (uint8_t)(1u << (bit % 8));
			if (open_copy(engines[e], k, bad, p.out_len, 70, scratch, &r) == 0)
				accepted++;
		}
		CHECK_EQ(accepted, 0);
		/* A bad tag still leaves the header unprotected and hdr_len and pn set: the
		 * proxy answers ngtcp2's header-protection callback from them. */
		struct kw_quic_pkt r;
		memcpy(bad, sealed, p.out_len);
		bad[p.out_len - 1] ^= 1;
		CHECK_EQ(open_copy(engines[e], k, bad, p.out_len, 70, scratch, &r), -KW_ECRYPTO);
		CHECK_EQ(r.hdr_len, hl);
		CHECK(r.pn == 77);
		CHECK(memcmp(scratch, plain, hl) == 0);
	}
	struct kw_quic_key_usage u;
	kw_quic_key_usage(k, &u);
	CHECK(u.failed > 0);
	kw_quic_key_unref(k);
}

static void test_bad_input(struct kw_quic_engine *e)
{
	uint8_t secret[32] = {1}, b[128] = {0x40};
	struct kw_quic_key *k;

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	struct kw_quic_pkt bad[] = {
	    /* seal: no key, header shorter than its packet number, no room for a sample */
	    {.buf = b, .len = 40, .hdr_len = 10, .dir = KW_QUIC_DIR_SEAL},
	    {.buf = b, .len = 40, .hdr_len = 1, .key = k, .dir = KW_QUIC_DIR_SEAL},
	    {.buf = b, .len = 12, .hdr_len = 10, .key = k, .dir = KW_QUIC_DIR_SEAL},
	    {.buf = b, .len = 40, .hdr_len = 41, .key = k, .dir = KW_QUIC_DIR_SEAL},
	    {.buf = b,
	     .len = 40,
	     .hdr_len = 10,
	     .pn = 1ull << 62,
	     .key = k,
	     .dir = KW_QUIC_DIR_SEAL},
	    /* open: too short for a sample, offset past the end, huge offset */
	    {.buf = b, .len = 29, .pn_offset = 10, .key = k, .dir = KW_QUIC_DIR_OPEN},
	    {.buf = b, .len = 40, .pn_offset = 41, .key = k, .dir = KW_QUIC_DIR_OPEN},
	    {.buf = b, .len = 40, .pn_offset = SIZE_MAX - 2, .key = k, .dir = KW_QUIC_DIR_OPEN},
	    {.buf = b, .len = 40, .pn_offset = 0, .key = k, .dir = KW_QUIC_DIR_OPEN},
	    {.buf = NULL, .len = 40, .pn_offset = 9, .key = k, .dir = KW_QUIC_DIR_OPEN},
	};
	size_t n = sizeof(bad) / sizeof(bad[0]);
	CHECK_EQ(kw_quic_engine_run(e, bad, n), 0);
	for (size_t i = 0; i < n; i++)
		CHECK_EQ(bad[i].status, -EINVAL);

	/* A short header with the key phase bit set and no key1: no key. */
	uint8_t pkt[64] = {0x44};
	struct kw_quic_pkt s = {
	    .buf = pkt, .len = 40, .hdr_len = 10, .pn = 5, .key = k, .dir = KW_QUIC_DIR_SEAL};
	CHECK_EQ(kw_quic_engine_run(e, &s, 1), 1);
	struct kw_quic_pkt o = {.buf = pkt,
	                        .len = s.out_len,
	                        .pn_offset = 9,
	                        .key = k,
	                        .largest_pn = 4,
	                        .dir = KW_QUIC_DIR_OPEN};
	CHECK_EQ(kw_quic_engine_run(e, &o, 1), 0);
	CHECK_EQ(o.status, -KW_ENOKEY);
	kw_quic_key_unref(k);
}

static void test_limits(struct kw_quic_engine *e)
{
	uint8_t secret[32] = {2}, b[8][64];
	struct kw_quic_key *k;
	struct kw_quic_pkt p[8];
	struct kw_quic_key_usage u;

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	kw_quic_key_usage(k, &u);
	CHECK_EQ(u.seal_limit, 1ull << 23);
	CHECK_EQ(u.fail_limit, 1ull << 52);
	kw_quic_key_set_limits(k, 10, 3);
	for (int i = 0; i < 8; i++) {
		memset(b[i], 0x41, sizeof(b[i]));
		b[i][0] = 0x41;
		p[i] = (struct kw_quic_pkt){.buf = b[i],
		                            .len = 40,
		                            .hdr_len = 11,
		                            .pn = i,
		                            .key = k,
		                            .dir = KW_QUIC_DIR_SEAL};
	}
	CHECK_EQ(kw_quic_engine_run(e, p, 8), 8);
	CHECK(!p[7].must_update);
	kw_quic_key_usage(k, &u);
	CHECK(u.sealed == 8 && !u.must_update);
	CHECK_EQ(kw_quic_engine_run(e, p, 2), 2);
	CHECK(p[1].must_update);
	kw_quic_key_usage(k, &u);
	CHECK(u.sealed == 10 && u.must_update && !u.must_close);
	/* Three forgeries reach the integrity limit. */
	for (int i = 0; i < 3; i++) {
		struct kw_quic_pkt o = {.buf = b[i],
		                        .len = 56,
		                        .pn_offset = 9,
		                        .key = k,
		                        .key1 = k,
		                        .dir = KW_QUIC_DIR_OPEN};
		b[i][30] ^= 1;
		CHECK_EQ(kw_quic_engine_run(e, &o, 1), 0);
		CHECK_EQ(o.status, -KW_ECRYPTO);
	}
	kw_quic_key_usage(k, &u);
	CHECK(u.failed == 3 && u.must_close);

	struct kw_quic_key *next;
	CHECK_EQ(kw_quic_key_next(&next, k), 0);
	kw_quic_key_usage(next, &u);
	CHECK(u.sealed == 0 && u.seal_limit == 10 && !u.must_update);
	kw_quic_key_unref(next);
	kw_quic_key_unref(k);
}

/* test_fallbacks: ipsec-mb does AES itself and counts what it hands to EVP (ChaCha20). */
static void test_fallbacks(void)
{
	struct kw_quic_engine *e, *a;
	struct kw_quic_engine_stats st;
	uint8_t secret[32] = {3}, b[2][80];
	struct kw_quic_key *aes, *chacha;

	CHECK_EQ(kw_quic_engine_new(&a, "auto"), 0);
	if (!kw_quic_engine_available("ipsec-mb")) {
		printf("ipsec-mb: not in this build or CPU; auto is %s\n", kw_quic_engine_name(a));
		CHECK(strcmp(kw_quic_engine_name(a), "evp") == 0);
		kw_quic_engine_free(a);
		return;
	}
	CHECK(strcmp(kw_quic_engine_name(a), "ipsec-mb") == 0);
	kw_quic_engine_free(a);
	CHECK_EQ(kw_quic_engine_new(&e, "ipsec-mb"), 0);
	CHECK_EQ(kw_quic_key_new(&aes, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	CHECK_EQ(kw_quic_key_new(&chacha, KW_QUIC_CIPHER_CHACHA20_POLY1305, secret, 32), 0);
	memset(b, 0x41, sizeof(b));
	struct kw_quic_pkt p[2] = {
	    {.buf = b[0], .len = 60, .hdr_len = 11, .pn = 1, .key = aes, .dir = KW_QUIC_DIR_SEAL},
	    {.buf = b[1],
	     .len = 60,
	     .hdr_len = 11,
	     .pn = 1,
	     .key = chacha,
	     .dir = KW_QUIC_DIR_SEAL},
	};
	CHECK_EQ(kw_quic_engine_run(e, p, 1), 1);
	kw_quic_engine_stats(e, &st);
	CHECK(st.sealed == 1 && st.hp_fallback == 0 && st.aead_fallback == 0);
	CHECK_EQ(kw_quic_engine_run(e, p + 1, 1), 1);
	kw_quic_engine_stats(e, &st);
	CHECK(st.sealed == 2 && st.hp_fallback == 1 && st.aead_fallback == 1 && st.key_setups == 2);
	kw_quic_key_unref(aes);
	kw_quic_key_unref(chacha);
	kw_quic_engine_free(e);
}

int main(void)
{
	for (int i = 0; test_engines[i]; i++)
		if (kw_quic_engine_available(test_engines[i]))
			CHECK_EQ(kw_quic_engine_new(&engines[n_engines++], test_engines[i]), 0);
	printf("%zu engine(s)\n", n_engines);
	test_fallbacks();
	for (int c = 0; c < KW_QUIC_CIPHER_COUNT; c++) {
		test_round_trips(c);
		test_flipped_bits(c, true);
		test_flipped_bits(c, false);
	}
	for (size_t e = 0; e < n_engines; e++) {
		test_bad_input(engines[e]);
		test_limits(engines[e]);
		kw_quic_engine_free(engines[e]);
	}
	CHECK_DONE();
}
