/*
 * key.c - RFC 9001 §5.1-5.2 key derivation with OpenSSL's HKDF, and the
 * reference-counted key objects with their §6.6 packet counts.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include "key.h"
#include "keyway/err.h"

/* RFC 9001 §5.2: the QUIC v1 Initial salt. */
static const uint8_t initial_salt_v1[20] = {0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34,
                                            0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8,
                                            0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a};

struct suite {
	const char *name, *md;
	size_t secret_len, key_len, hp_len;
	uint64_t seal_limit, fail_limit; /* RFC 9001 §6.6 */
};

static const struct suite suites[KW_QUIC_CIPHER_COUNT] = {
    [KW_QUIC_CIPHER_AES_128_GCM] = {"aes-128-gcm", "SHA256", 32, 16, 16, 1ull << 23, 1ull << 52},
    [KW_QUIC_CIPHER_AES_256_GCM] = {"aes-256-gcm", "SHA384", 48, 32, 32, 1ull << 23, 1ull << 52},
    [KW_QUIC_CIPHER_CHACHA20_POLY1305] = {"chacha20-poly1305", "SHA256", 32, 32, 32, 1ull << 62,
                                          1ull << 36},
};

int kw_quic_cipher_parse(const char *name)
{
	for (int c = 0; c < KW_QUIC_CIPHER_COUNT; c++)
		if (name != NULL && strcmp(name, suites[c].name) == 0)
			return c;
	return -EINVAL;
}

const char *kw_quic_cipher_name(enum kw_quic_cipher c)
{
	return (unsigned)c < KW_QUIC_CIPHER_COUNT ? suites[c].name : "?";
}

size_t kw_quic_secret_len(enum kw_quic_cipher c)
{
	return (unsigned)c < KW_QUIC_CIPHER_COUNT ? suites[c].secret_len : 0;
}

/* hkdf runs OpenSSL's HKDF in one mode (extract-only or expand-only). */
static int hkdf(uint8_t *out, size_t out_len, const char *md, int mode, const uint8_t *key,
                size_t key_len, const uint8_t *salt, size_t salt_len, const uint8_t *info,
                size_t info_len)
{
	EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
	EVP_KDF_CTX *ctx = kdf != NULL ? EVP_KDF_CTX_new(kdf) : NULL;
	OSSL_PARAM params[6], *p = params;
	int rc = -KW_ECRYPTO;

	if (ctx == NULL)
		goto out;
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)md, 0);
	*p++ = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)key, key_len);
	if (salt != NULL)
		*p++ =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len);
	if (info != NULL)
		*p++ =
		    OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)info, info_len);
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(ctx, out, out_len, params) > 0)
		rc = 0;
out:
	EVP_KDF_CTX_free(ctx);
	EVP_KDF_free(kdf);
	return rc;
}

int kw_quic_expand_label(uint8_t *out, size_t out_len, const char *md, const uint8_t *secret,
                         size_t secret_len, const char *label)
{
	/* HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label, context<0..255>. */
	static const char prefix[] = "tls13 ";
	uint8_t info[2 + 1 + 255 + 1];
	size_t label_len = strlen(label), n = 0;

	if (label_len > 255 - (sizeof(prefix) - 1) || out_len > 0xffff)
		return -EINVAL;
	info[n++] = (uint8_t)(out_len >> 8);
	info[n++] = (uint8_t)out_len;
	info[n++] = (uint8_t)(sizeof(prefix) - 1 + label_len);
	memcpy(info + n, prefix, sizeof(prefix) - 1);
	n += sizeof(prefix) - 1;
	memcpy(info + n, label, label_len);
	n += label_len;
	info[n++] = 0; /* empty context */
	return hkdf(out, out_len, md, EVP_KDF_HKDF_MODE_EXPAND_ONLY, secret, secret_len, NULL, 0,
	            info, n);
}

int kw_quic_initial_secrets(struct kw_quic_initial *out, const uint8_t *dcid, size_t dcid_len)
{
	static const uint8_t empty[1];
	int rc;

	if (dcid_len > KW_QUIC_CID_MAX)
		return -EINVAL;
	/* HKDF's key may be empty (a zero-length DCID) but never NULL. */
	rc = hkdf(out->initial, sizeof(out->initial), "SHA256", EVP_KDF_HKDF_MODE_EXTRACT_ONLY,
	          dcid_len ? dcid : empty, dcid_len, initial_salt_v1, sizeof(initial_salt_v1), NULL,
	          0);
	if (rc == 0)
		rc = kw_quic_expand_label(out->client, sizeof(out->client), "SHA256", out->initial,
		                          sizeof(out->initial), "client in");
	if (rc == 0)
		rc = kw_quic_expand_label(out->server, sizeof(out->server), "SHA256", out->initial,
		                          sizeof(out->initial), "server in");
	if (rc < 0)
		OPENSSL_cleanse(out, sizeof(*out));
	return rc;
}

/* derive fills k's key and iv (and hp when with_hp) from k->secret. */
static int derive(struct kw_quic_key *k, const struct suite *s, bool with_hp)
{
	int rc =
	    kw_quic_expand_label(k->key, s->key_len, s->md, k->secret, s->secret_len, "quic key");
	if (rc == 0)
		rc = kw_quic_expand_label(k->iv, KW_QUIC_IV_LEN, s->md, k->secret, s->secret_len,
		                          "quic iv");
	if (rc == 0 && with_hp)
		rc = kw_quic_expand_label(k->hp, s->hp_len, s->md, k->secret, s->secret_len,
		                          "quic hp");
	return rc;
}

static struct kw_quic_key *key_alloc(enum kw_quic_cipher c)
{
	const struct suite *s = &suites[c];
	struct kw_quic_key *k = calloc(1, sizeof(*k));

	if (k == NULL)
		return NULL;
	atomic_init(&k->refs, 1);
	k->cipher = c;
	k->secret_len = s->secret_len;
	k->key_len = s->key_len;
	k->hp_len = s->hp_len;
	k->seal_limit = s->seal_limit;
	k->fail_limit = s->fail_limit;
	return k;
}

int kw_quic_key_new(struct kw_quic_key **out, enum kw_quic_cipher c, const uint8_t *secret,
                    size_t secret_len)
{
	struct kw_quic_key *k;
	int rc;

	*out = NULL;
	if ((unsigned)c >= KW_QUIC_CIPHER_COUNT || secret_len != suites[c].secret_len)
		return -EINVAL;
	if ((k = key_alloc(c)) == NULL)
		return -ENOMEM;
	memcpy(k->secret, secret, secret_len);
	if ((rc = derive(k, &suites[c], true)) < 0) {
		kw_quic_key_unref(k);
		return rc;
	}
	*out = k;
	return 0;
}

int kw_quic_key_next(struct kw_quic_key **out, const struct kw_quic_key *k)
{
	const struct suite *s = &suites[k->cipher];
	struct kw_quic_key *n;
	int rc;

	*out = NULL;
	if ((n = key_alloc(k->cipher)) == NULL)
		return -ENOMEM;
	rc = kw_quic_expand_label(n->secret, s->secret_len, s->md, k->secret, s->secret_len,
	                          "quic ku");
	if (rc == 0)
		rc = derive(n, s, false);
	if (rc < 0) {
		kw_quic_key_unref(n);
		return rc;
	}
	/* RFC 9001 §6: the header-protection key does not change with the key phase. */
	memcpy(n->hp, k->hp, s->hp_len);
	n->seal_limit = k->seal_limit;
	n->fail_limit = k->fail_limit;
	*out = n;
	return 0;
}

struct kw_quic_key *kw_quic_key_ref(struct kw_quic_key *k)
{
	if (k != NULL)
		atomic_fetch_add_explicit(&k->refs, 1, memory_order_relaxed);
	return k;
}

void kw_quic_key_unref(struct kw_quic_key *k)
{
	if (k == NULL || atomic_fetch_sub_explicit(&k->refs, 1, memory_order_acq_rel) != 1)
		return;
	for (unsigned i = 0; i < KW_QUIC_SLOTS; i++)
		if (k->slot[i].state != NULL)
			k->slot[i].free(k->slot[i].state);
	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
}

void kw_quic_key_material(const struct kw_quic_key *k, struct kw_quic_key_material *out)
{
	out->cipher = k->cipher;
	out->key = k->key;
	out->key_len = k->key_len;
	out->iv = k->iv;
	out->iv_len = KW_QUIC_IV_LEN;
	out->hp = k->hp;
	out->hp_len = k->hp_len;
}

void kw_quic_key_usage(const struct kw_quic_key *k, struct kw_quic_key_usage *out)
{
	out->sealed = atomic_load_explicit(&k->sealed, memory_order_relaxed);
	out->failed = atomic_load_explicit(&k->failed, memory_order_relaxed);
	out->seal_limit = k->seal_limit;
	out->fail_limit = k->fail_limit;
	out->must_update = out->sealed >= k->seal_limit;
	out->must_close = out->failed >= k->fail_limit;
}

void kw_quic_key_set_limits(struct kw_quic_key *k, uint64_t seal_limit, uint64_t fail_limit)
{
	if (seal_limit != 0)
		k->seal_limit = seal_limit;
	if (fail_limit != 0)
		k->fail_limit = fail_limit;
}

bool kw_quic_key_count_seal(struct kw_quic_key *k, uint64_t n)
{
	uint64_t before = atomic_fetch_add_explicit(&k->sealed, n, memory_order_relaxed);
	return before + n >= k->seal_limit;
}

void kw_quic_key_count_fail(struct kw_quic_key *k, uint64_t n)
{
	atomic_fetch_add_explicit(&k->failed, n, memory_order_relaxed);
}
