/*
 * test_key.c - key.c beyond the RFC 9001 Appendix A vectors (test_vectors.c):
 * every suite's derivation against OpenSSL's own TLS 1.3 KDF, the suite
 * table, reference counts and engine slots, and the §6.6 usage limits.
 */
#include <errno.h>

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "check.h"
#include "key.h"
#include "keyway/err.h"
#include "quic_test.h"

/* ref_expand is HKDF-Expand-Label with an empty context, computed by OpenSSL's TLS13-KDF. */
static void ref_expand(uint8_t *out, size_t len, const char *md, const uint8_t *secret,
                       size_t secret_len, const char *label)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "TLS13-KDF", NULL);
	EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
	int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
	OSSL_PARAM p[] = {
	    OSSL_PARAM_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0),
	    OSSL_PARAM_int(OSSL_KDF_PARAM_MODE, &mode),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_KEY, (void *)secret, secret_len),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_PREFIX, "tls13 ", 6),
	    OSSL_PARAM_octet_string(OSSL_KDF_PARAM_LABEL, (void *)label, strlen(label)),
	    OSSL_PARAM_END,
	};
	CHECK(ctx != NULL && EVP_KDF_derive(ctx, out, len, p) > 0);
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
}

/* check_parts compares m's key and IV with those of secret, and its hp with hp_secret's. */
static void check_parts(const struct kw_quic_key_material *m, const char *md, const uint8_t *secret,
                        const uint8_t *hp_secret, size_t slen)
{
	uint8_t want[32];
	ref_expand(want, m->key_len, md, secret, slen, "quic key");
	CHECK(memcmp(m->key, want, m->key_len) == 0);
	ref_expand(want, KW_QUIC_IV_LEN, md, secret, slen, "quic iv");
	CHECK(memcmp(m->iv, want, KW_QUIC_IV_LEN) == 0);
	ref_expand(want, m->hp_len, md, hp_secret, slen, "quic hp");
	CHECK(memcmp(m->hp, want, m->hp_len) == 0);
}

/* check_suite derives a key of cipher c from secret and compares each part with ref_expand. */
static void check_suite(enum kw_quic_cipher c, const char *md, size_t key_len)
{
	uint8_t secret[48], ku[48];
	size_t slen = kw_quic_secret_len(c);
	struct kw_quic_key *k, *next;
	struct kw_quic_key_material m;

	for (size_t i = 0; i < sizeof(secret); i++)
		secret[i] = (uint8_t)(0xa0 + i);
	CHECK_EQ(kw_quic_key_new(&k, c, secret, slen), 0);
	kw_quic_key_material(k, &m);
	CHECK_EQ(m.cipher, c);
	CHECK_EQ(m.key_len, key_len);
	CHECK_EQ(m.hp_len, key_len);
	CHECK_EQ(m.iv_len, KW_QUIC_IV_LEN);
	check_parts(&m, md, secret, secret, slen);

	/* The next key phase: secret from "quic ku", keys from it, the same hp. */
	ref_expand(ku, slen, md, secret, slen, "quic ku");
	CHECK_EQ(kw_quic_key_next(&next, k), 0);
	kw_quic_key_material(next, &m);
	CHECK_EQ(m.key_len, key_len);
	check_parts(&m, md, ku, secret, slen);
	kw_quic_key_unref(next);
	kw_quic_key_unref(k);

	/* A secret of another suite's length is refused. */
	CHECK_EQ(kw_quic_key_new(&k, c, secret, slen == 32 ? 48 : 32), -EINVAL);
	CHECK(k == NULL);
}

static void test_derivation(void)
{
	uint8_t secret[32], v[16], out[16];

	/* The reference KDF itself reproduces RFC 9001 A.1. */
	CHECK_EQ(vec("client_initial_secret", secret, sizeof(secret)), 32);
	ref_expand(out, 16, "SHA256", secret, 32, "quic key");
	CHECK(vec("client_key", v, sizeof(v)) == 16 && memcmp(out, v, 16) == 0);
	CHECK_EQ(kw_quic_expand_label(out, 16, "SHA256", secret, 32, "quic hp"), 0);
	CHECK(vec("client_hp", v, sizeof(v)) == 16 && memcmp(out, v, 16) == 0);

	check_suite(KW_QUIC_CIPHER_AES_128_GCM, "SHA256", 16);
	check_suite(KW_QUIC_CIPHER_AES_256_GCM, "SHA384", 32);
	check_suite(KW_QUIC_CIPHER_CHACHA20_POLY1305, "SHA256", 32);

	/* HkdfLabel's label holds at most 255 bytes with "tls13 ". */
	char label[256];
	memset(label, 'x', sizeof(label) - 1);
	label[249] = '\0';
	CHECK_EQ(kw_quic_expand_label(out, 16, "SHA256", secret, 32, label), 0);
	label[249] = 'x';
	label[250] = '\0';
	CHECK_EQ(kw_quic_expand_label(out, 16, "SHA256", secret, 32, label), -EINVAL);
	CHECK_EQ(kw_quic_expand_label(out, 16, "NO-SUCH-MD", secret, 32, "quic key"), -KW_ECRYPTO);
}

static void test_suites(void)
{
	static const char *const names[] = {"aes-128-gcm", "aes-256-gcm", "chacha20-poly1305"};
	static const size_t secret_len[] = {32, 48, 32};
	for (int c = 0; c < KW_QUIC_CIPHER_COUNT; c++) {
		CHECK_EQ(kw_quic_cipher_parse(names[c]), c);
		CHECK(strcmp(kw_quic_cipher_name((enum kw_quic_cipher)c), names[c]) == 0);
		CHECK_EQ(kw_quic_secret_len((enum kw_quic_cipher)c), secret_len[c]);
	}
	CHECK_EQ(kw_quic_cipher_parse("AES-128-GCM"), -EINVAL);
	CHECK_EQ(kw_quic_cipher_parse(NULL), -EINVAL);
	CHECK(strcmp(kw_quic_cipher_name(KW_QUIC_CIPHER_COUNT), "?") == 0);
	CHECK_EQ(kw_quic_secret_len(KW_QUIC_CIPHER_COUNT), 0);
}

static int slot_frees;

static void slot_free(void *state)
{
	slot_frees++;
	free(state);
}

/* The last reference frees the key and whatever engines left in its slots, once. */
static void test_refs(void)
{
	uint8_t secret[32] = {7};
	struct kw_quic_key *k;

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, 32), 0);
	k->slot[0] = (struct kw_quic_key_slot){.gen = 1, .free = slot_free, .state = malloc(8)};
	k->slot[KW_QUIC_SLOTS - 1] =
	    (struct kw_quic_key_slot){.gen = 9, .free = slot_free, .state = malloc(8)};
	CHECK(kw_quic_key_ref(k) == k);
	CHECK(kw_quic_key_ref(k) == k);
	kw_quic_key_unref(k);
	kw_quic_key_unref(k);
	CHECK_EQ(slot_frees, 0);
	CHECK_EQ(atomic_load(&k->refs), 1);
	kw_quic_key_unref(k);
	CHECK_EQ(slot_frees, 2);
	CHECK(kw_quic_key_ref(NULL) == NULL);
	kw_quic_key_unref(NULL);
}

/* RFC 9001 §6.6: confidentiality and integrity limits per suite, and how they are reached. */
static void test_limits(void)
{
	static const uint64_t seal[] = {1ull << 23, 1ull << 23, 1ull << 62};
	static const uint64_t fail[] = {1ull << 52, 1ull << 52, 1ull << 36};
	uint8_t secret[48] = {3};
	struct kw_quic_key *k, *next;
	struct kw_quic_key_usage u;

	for (int c = 0; c < KW_QUIC_CIPHER_COUNT; c++) {
		CHECK_EQ(kw_quic_key_new(&k, (enum kw_quic_cipher)c, secret,
		                         kw_quic_secret_len((enum kw_quic_cipher)c)),
		         0);
		kw_quic_key_usage(k, &u);
		CHECK_EQ(u.seal_limit, seal[c]);
		CHECK_EQ(u.fail_limit, fail[c]);
		CHECK(u.sealed == 0 && u.failed == 0 && !u.must_update && !u.must_close);
		kw_quic_key_unref(k);
	}

	CHECK_EQ(kw_quic_key_new(&k, KW_QUIC_CIPHER_CHACHA20_POLY1305, secret, 32), 0);
	kw_quic_key_set_limits(k, 0, 5); /* 0 keeps the seal limit */
	kw_quic_key_usage(k, &u);
	CHECK_EQ(u.seal_limit, 1ull << 62);
	CHECK_EQ(u.fail_limit, 5);
	kw_quic_key_set_limits(k, 4, 0);
	kw_quic_key_usage(k, &u);
	CHECK(u.seal_limit == 4 && u.fail_limit == 5);

	/* The packet that reaches the limit says so, and every one after it. */
	CHECK(!kw_quic_key_count_seal(k, 3));
	CHECK(kw_quic_key_count_seal(k, 1));
	CHECK(kw_quic_key_count_seal(k, 1));
	kw_quic_key_usage(k, &u);
	CHECK(u.sealed == 5 && u.must_update);
	kw_quic_key_count_fail(k, 4);
	kw_quic_key_usage(k, &u);
	CHECK(u.failed == 4 && !u.must_close);
	kw_quic_key_count_fail(k, 1);
	kw_quic_key_usage(k, &u);
	CHECK(u.failed == 5 && u.must_close);

	/* The next phase starts counting afresh, under the same limits. */
	CHECK_EQ(kw_quic_key_next(&next, k), 0);
	kw_quic_key_usage(next, &u);
	CHECK(u.sealed == 0 && u.failed == 0 && u.seal_limit == 4 && u.fail_limit == 5);
	kw_quic_key_unref(next);
	kw_quic_key_unref(k);
}

int main(void)
{
	test_derivation();
	test_suites();
	test_refs();
	test_limits();
	CHECK_DONE();
}
