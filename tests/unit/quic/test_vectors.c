/*
 * test_vectors.c - RFC 9001 Appendix A reproduced byte for byte: the Initial
 * secrets and keys (A.1), the client Initial (A.2), the server Initial (A.3)
 * and the ChaCha20-Poly1305 short header packet (A.5), sealed and opened by
 * every engine this build and CPU have.
 */
#include <errno.h>

#include "check.h"
#include "quic_test.h"

#include "keyway/err.h"

static uint8_t buf[2048], want[2048], hdr[64], payload[2048];

static void check_material(const char *side, const uint8_t *secret)
{
	struct kw_quic_key *k;
	struct kw_quic_key_material m;
	uint8_t v[32];
	char name[32];

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	kw_quic_key_material(k, &m);
	snprintf(name, sizeof(name), "%s_key", side);
	CHECK(vec(name, v, sizeof(v)) == 16 && memcmp(m.key, v, 16) == 0);
	snprintf(name, sizeof(name), "%s_iv", side);
	CHECK(vec(name, v, sizeof(v)) == 12 && memcmp(m.iv, v, 12) == 0);
	snprintf(name, sizeof(name), "%s_hp", side);
	CHECK(vec(name, v, sizeof(v)) == 16 && memcmp(m.hp, v, 16) == 0);
	kw_quic_key_unref(k);
}

static void test_initial(void)
{
	struct kw_quic_initial in;
	uint8_t dcid[8], v[32];

	CHECK_EQ(vec("dcid", dcid, sizeof(dcid)), 8);
	CHECK_EQ(kw_quic_initial_secrets(&in, dcid, 8), 0);
	CHECK(vec("initial_secret", v, 32) == 32 && memcmp(in.initial, v, 32) == 0);
	CHECK(vec("client_initial_secret", v, 32) == 32 && memcmp(in.client, v, 32) == 0);
	CHECK(vec("server_initial_secret", v, 32) == 32 && memcmp(in.server, v, 32) == 0);
	check_material("client", in.client);
	check_material("server", in.server);
	CHECK_EQ(kw_quic_initial_secrets(&in, dcid, 21), -EINVAL);
	CHECK_EQ(kw_quic_initial_secrets(&in, NULL, 0), 0);
}

static void test_chacha_keys(void)
{
	struct kw_quic_key *k, *next;
	struct kw_quic_key_material m, mn;
	uint8_t secret[32], v[32], ku[32];

	CHECK_EQ(vec("a5_secret", secret, 32), 32);
	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_CHACHA20_POLY1305, secret, 32), 0);
	kw_quic_key_material(k, &m);
	CHECK(vec("a5_key", v, 32) == 32 && m.key_len == 32 && memcmp(m.key, v, 32) == 0);
	CHECK(vec("a5_iv", v, 32) == 12 && memcmp(m.iv, v, 12) == 0);
	CHECK(vec("a5_hp", v, 32) == 32 && m.hp_len == 32 && memcmp(m.hp, v, 32) == 0);
	CHECK_EQ(kw_quic_expand_label(ku, 32, "SHA256", secret, 32, "quic ku"), 0);
	CHECK(vec("a5_ku", v, 32) == 32 && memcmp(ku, v, 32) == 0);

	/* The next phase: keys from "quic ku", the same header-protection key. */
	struct kw_quic_key *from_ku;
	CHECK_EQ(kw_quic_key_next(&next, k), 0);
	CHECK_EQ(kw_quic_key_new(&from_ku, KW_QUIC_CIPHER_CHACHA20_POLY1305, ku, 32), 0);
	kw_quic_key_material(next, &mn);
	kw_quic_key_material(from_ku, &m);
	CHECK(memcmp(mn.key, m.key, 32) == 0 && memcmp(mn.iv, m.iv, 12) == 0);
	kw_quic_key_material(k, &m);
	CHECK(memcmp(mn.hp, m.hp, 32) == 0);
	kw_quic_key_unref(from_ku);
	kw_quic_key_unref(next);
	kw_quic_key_unref(k);
	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_256_GCM, secret, 32), -EINVAL);
	CHECK(k == NULL);
}

/* check_packet seals vector p's header and payload, then opens the result. */
static void check_packet(struct kw_quic_engine *e, struct kw_quic_key *key, const char *p,
                         size_t dcid_len, uint64_t largest)
{
	char name[32];
	snprintf(name, sizeof(name), "%s_header", p);
	int hl = vec(name, hdr, sizeof(hdr));
	snprintf(name, sizeof(name), "%s_payload", p);
	int pl = vec(name, payload, sizeof(payload));
	snprintf(name, sizeof(name), "%s_packet", p);
	int wl = vec(name, want, sizeof(want));
	snprintf(name, sizeof(name), "%s_pn", p);
	uint64_t pn = vec_u64(name);
	CHECK(hl > 0 && pl > 0 && wl == hl + pl + KW_QUIC_TAG_LEN);

	memcpy(buf, hdr, hl);
	memcpy(buf + hl, payload, pl);
	struct kw_quic_pkt s = {.buf = buf,
	                        .len = hl + pl,
	                        .hdr_len = hl,
	                        .pn = pn,
	                        .key = key,
	                        .dir = KW_QUIC_DIR_SEAL};
	CHECK_EQ(kw_quic_engine_run(e, &s, 1), 1);
	CHECK_EQ(s.status, 0);
	CHECK_EQ(s.out_len, wl);
	CHECK(memcmp(buf, want, wl) == 0);

	struct kw_quic_header h;
	CHECK_EQ(kw_quic_header_parse(&h, want, wl, dcid_len), 0);
	CHECK_EQ(h.pkt_len, wl);
	memcpy(buf, want, wl);
	struct kw_quic_pkt o = {.buf = buf,
	                        .len = wl,
	                        .pn_offset = h.pn_offset,
	                        .key = key,
	                        .key1 = key,
	                        .largest_pn = largest,
	                        .dir = KW_QUIC_DIR_OPEN};
	CHECK_EQ(kw_quic_engine_run(e, &o, 1), 1);
	CHECK_EQ(o.status, 0);
	CHECK_EQ(o.pn, pn);
	CHECK_EQ(o.hdr_len, hl);
	CHECK_EQ(o.out_len, pl);
	CHECK(memcmp(buf, hdr, hl) == 0 && memcmp(buf + hl, payload, pl) == 0);
}

static void test_engine(const char *name)
{
	struct kw_quic_engine *e;
	struct kw_quic_initial in;
	struct kw_quic_key *client, *server, *chacha;
	uint8_t dcid[8], secret[32];

	if (!kw_quic_engine_available(name)) {
		printf("engine %s: not in this build or CPU, skipped\n", name);
		return;
	}
	CHECK_EQ(kw_quic_engine_new(&e, name), 0);
	CHECK(strcmp(kw_quic_engine_name(e), name) == 0);
	vec("dcid", dcid, sizeof(dcid));
	vec("a5_secret", secret, sizeof(secret));
	CHECK_EQ(kw_quic_initial_secrets(&in, dcid, 8), 0);
	CHECK_EQ(kw_quic_key_new(&client, KW_QUIC_CIPHER_AES_128_GCM, in.client, 32), 0);
	CHECK_EQ(kw_quic_key_new(&server, KW_QUIC_CIPHER_AES_128_GCM, in.server, 32), 0);
	CHECK_EQ(kw_quic_key_new(&chacha, KW_QUIC_CIPHER_CHACHA20_POLY1305, secret, 32), 0);
	check_packet(e, client, "a2", 8, 1);
	check_packet(e, server, "a3", 0, 0);
	check_packet(e, chacha, "a5", 0, 654360563);
	check_packet(e, chacha, "a5", 0, 654360600);
	printf("engine %s: A.2, A.3, A.5 sealed and opened\n", name);
	kw_quic_key_unref(client);
	kw_quic_key_unref(server);
	kw_quic_key_unref(chacha);
	kw_quic_engine_free(e);
}

int main(void)
{
	test_initial();
	test_chacha_keys();
	for (int i = 0; test_engines[i]; i++)
		test_engine(test_engines[i]);
	CHECK(kw_quic_engine_available("evp"));
	CHECK(!kw_quic_engine_available("nope"));
	CHECK_DONE();
}
