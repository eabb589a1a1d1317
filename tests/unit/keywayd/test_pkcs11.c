/*
 * test_pkcs11.c - token keys on SoftHSM2: URIs, PINs, indexing by SKI and
 * digest, and every keyless operation, checked against the same key used as
 * a file key (deterministic results byte for byte, the others verified with
 * the public key). Skipped (77) when SoftHSM2 is not installed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rsa.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keystore.h"
#include "p11_fixture.h"
#include "pkcs11.h"

static EVP_PKEY *rsa2048, *p256, *p384, *ed25519;
static const char *module;
static char *dir;

static const uint8_t all_opcodes[] = {
    KW_OP_RSA_DECRYPT,         KW_OP_RSA_SIGN_MD5SHA1,    KW_OP_RSA_SIGN_SHA1,
    KW_OP_RSA_SIGN_SHA224,     KW_OP_RSA_SIGN_SHA256,     KW_OP_RSA_SIGN_SHA384,
    KW_OP_RSA_SIGN_SHA512,     KW_OP_RSA_PSS_SIGN_SHA256, KW_OP_RSA_PSS_SIGN_SHA384,
    KW_OP_RSA_PSS_SIGN_SHA512, KW_OP_ECDSA_SIGN_MD5SHA1,  KW_OP_ECDSA_SIGN_SHA1,
    KW_OP_ECDSA_SIGN_SHA224,   KW_OP_ECDSA_SIGN_SHA256,   KW_OP_ECDSA_SIGN_SHA384,
    KW_OP_ECDSA_SIGN_SHA512,   KW_OP_ED25519_SIGN,
};

static int load1(const char *uri, const char *mod, struct kwd_p11_set **s, char *err, size_t errlen)
{
	const char *uris[] = {uri};
	struct kwd_p11_options o = {.module = mod, .uris = uris, .nuris = 1};
	return kwd_p11_load(&o, s, err, errlen);
}

static const struct kwd_p11_key *find(const struct kwd_p11_set *s, EVP_PKEY *want)
{
	uint8_t ski[KW_SKI_LEN];
	if (kw_key_ski(want, ski) != 0)
		return NULL;
	for (size_t i = 0; i < kwd_p11_set_count(s); i++)
		if (memcmp(kwd_p11_set_key(s, i)->ski, ski, KW_SKI_LEN) == 0)
			return kwd_p11_set_key(s, i);
	return NULL;
}

/* file_result runs d on the file key priv, as keywayd's exec.c does. */
static int file_result(EVP_PKEY *priv, const struct kw_opcode_desc *d, const uint8_t *in,
                       size_t len, uint8_t *out, size_t *outlen)
{
	if (d->alg == KW_ALG_ED25519) {
		struct kw_ed25519_signer s = {0};
		int rc = kw_ed25519_sign(&s, priv, out, KW_RESULT_MAX, outlen, in, len);
		kw_ed25519_signer_cleanup(&s);
		return rc;
	}
	EVP_PKEY_CTX *ctx = kw_opcode_pctx_new(priv, d);
	int rc = ctx != NULL ? kw_opcode_pctx_run(ctx, d, priv, out, KW_RESULT_MAX, outlen, in, len)
	                     : -1;
	EVP_PKEY_CTX_free(ctx);
	return rc;
}

/* verify checks a randomised signature (PSS, ECDSA) with the file key's context settings. */
static bool verify(EVP_PKEY *key, const struct kw_opcode_desc *d, const uint8_t *sig, size_t siglen,
                   const uint8_t *tbs, size_t tbslen)
{
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, key, NULL);
	bool ok = ctx != NULL && EVP_PKEY_verify_init(ctx) == 1;
	if (ok && d->alg == KW_ALG_RSA_PSS) {
		const EVP_MD *md = EVP_get_digestbyname(d->md);
		ok = EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		     EVP_PKEY_CTX_set_signature_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) == 1 &&
		     EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) == 1;
	}
	ok = ok && EVP_PKEY_verify(ctx, sig, siglen, tbs, tbslen) == 1;
	EVP_PKEY_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* check_ops runs every opcode of key's type on the token and compares with the file key. */
static void check_ops(const struct kwd_p11_key *k, EVP_PKEY *priv)
{
	uint8_t in[KW_RESULT_MAX], got[KW_RESULT_MAX], want[KW_RESULT_MAX];
	size_t glen, wlen;

	for (size_t i = 0; i < sizeof(all_opcodes); i++) {
		const struct kw_opcode_desc *d = kw_opcode_desc(all_opcodes[i]);
		if (d->key_type != k->type)
			continue;
		size_t len = d->hash_len ? d->hash_len : 100;
		for (size_t j = 0; j < len; j++)
			in[j] = (uint8_t)(j * 7 + all_opcodes[i]);
		if (d->alg == KW_ALG_RSA_DECRYPT) {
			len = (k->bits + 7) / 8;
			in[0] = 0x00; /* below the modulus */
		}
		CHECK_EQ(kwd_p11_run(k, d, in, len, got, sizeof(got), &glen), KW_ERR_NONE);
		CHECK(file_result(priv, d, in, len, want, &wlen) == 0);
		switch (d->alg) {
		case KW_ALG_RSA_PSS:
		case KW_ALG_ECDSA:
			if (!verify(priv, d, got, glen, in, len)) {
				fprintf(stderr, "opcode 0x%02x on %s: bad signature\n",
				        all_opcodes[i], k->name);
				check_failures++;
			}
			break;
		default:
			/* Deterministic: byte-identical to the file key's answer. */
			CHECK_EQ(glen, wlen);
			if (glen != wlen || memcmp(got, want, wlen) != 0) {
				fprintf(stderr, "opcode 0x%02x on %s differs\n", all_opcodes[i],
				        k->name);
				check_failures++;
			}
		}
	}
}

static void test_load_and_ops(void)
{
	struct kwd_p11_set *s = NULL;
	char err[512] = "";
	uint8_t digest[KW_DIGEST_LEN];

	CHECK(load1("pkcs11:token=kwtest?pin-value=" P11_PIN, module, &s, err, sizeof(err)) == 0);
	if (s == NULL) {
		fprintf(stderr, "load: %s\n", err);
		check_failures++;
		return;
	}
	CHECK_EQ(kwd_p11_set_count(s), 4);
	EVP_PKEY *keys[] = {rsa2048, p256, p384, ed25519};
	const char *labels[] = {"rsa2048", "p256", "p384", "ed25519"};
	unsigned bits[] = {2048, 256, 384, 256};
	for (size_t i = 0; i < 4; i++) {
		const struct kwd_p11_key *k = find(s, keys[i]);
		CHECK(k != NULL);
		if (k == NULL)
			continue;
		CHECK(k->label != NULL && strcmp(k->label, labels[i]) == 0);
		CHECK(EVP_PKEY_eq(k->pub, keys[i]) == 1);
		CHECK_EQ(k->type, kw_key_type_of(keys[i]));
		CHECK_EQ(k->bits, bits[i]);
		CHECK_EQ(k->has_digest, i == 0);
		if (i == 0) {
			CHECK(kw_key_digest(rsa2048, digest) == 0);
			CHECK(memcmp(k->digest, digest, KW_DIGEST_LEN) == 0);
		}
		CHECK(strstr(k->name, "token=kwtest") != NULL);
		check_ops(k, keys[i]);
	}
	kwd_p11_set_unref(s);
}

/* A short ciphertext is the same integer: the answer is still k bytes, as for file keys. */
static void test_decrypt_edges(void)
{
	struct kwd_p11_set *s = NULL;
	char err[512];
	uint8_t in[256], out[KW_RESULT_MAX], want[KW_RESULT_MAX];
	size_t olen, wlen;
	const struct kw_opcode_desc *d = kw_opcode_desc(KW_OP_RSA_DECRYPT);

	CHECK(load1("pkcs11:token=kwtest;object=rsa2048?pin-value=" P11_PIN, module, &s, err,
	            sizeof(err)) == 0);
	if (s == NULL)
		return;
	CHECK_EQ(kwd_p11_set_count(s), 1);
	const struct kwd_p11_key *k = kwd_p11_set_key(s, 0);
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i + 1);
	CHECK_EQ(kwd_p11_run(k, d, in, 100, out, sizeof(out), &olen), KW_ERR_NONE);
	CHECK(file_result(rsa2048, d, in, 100, want, &wlen) == 0);
	CHECK_EQ(olen, 256);
	CHECK(olen == wlen && memcmp(out, want, wlen) == 0);
	/* At or above the modulus: a crypto error, as for file keys, and the token goes on. */
	memset(in, 0xff, sizeof(in));
	CHECK_EQ(kwd_p11_run(k, d, in, 256, out, sizeof(out), &olen), KW_ERR_CRYPTO);
	CHECK_EQ(olen, 0);
	CHECK_EQ(
	    kwd_p11_run(k, kw_opcode_desc(KW_OP_RSA_SIGN_SHA256), in, 32, out, sizeof(out), &olen),
	    KW_ERR_NONE);
	kwd_p11_set_unref(s);
}

/* Selecting objects: by label, by id, several URIs on one token share its login. */
static void test_select(void)
{
	struct kwd_p11_set *s = NULL;
	char err[512];

	CHECK(load1("pkcs11:token=kwtest;id=%02?pin-value=" P11_PIN, module, &s, err,
	            sizeof(err)) == 0);
	CHECK(s != NULL && kwd_p11_set_count(s) == 1 && find(s, p256) != NULL);
	kwd_p11_set_unref(s);

	const char *uris[] = {"pkcs11:token=kwtest;object=p384?pin-value=" P11_PIN,
	                      "pkcs11:token=kwtest;object=ed25519;type=private?pin-value=" P11_PIN};
	struct kwd_p11_options o = {.module = module, .uris = uris, .nuris = 2};
	CHECK(kwd_p11_load(&o, &s, err, sizeof(err)) == 0);
	CHECK(s != NULL && kwd_p11_set_count(s) == 2);
	CHECK(s != NULL && find(s, p384) != NULL && find(s, ed25519) != NULL);
	kwd_p11_set_unref(s);

	/* module-path in the URI wins over the option. */
	char uri[1024];
	snprintf(uri, sizeof(uri), "pkcs11:token=kwtest;object=p256?module-path=%s&pin-value=%s",
	         module, P11_PIN);
	CHECK(load1(uri, "/nonexistent/module.so", &s, err, sizeof(err)) == 0);
	CHECK(s != NULL && kwd_p11_set_count(s) == 1);
	kwd_p11_set_unref(s);
}

static void expect_refused(const char *uri, const char *mod, const char *needle)
{
	struct kwd_p11_set *s = NULL;
	char err[512] = "";
	/* A token still logged in by an earlier set would take any PIN: let those go. */
	kwd_p11_wait_teardowns();
	CHECK_EQ(load1(uri, mod, &s, err, sizeof(err)), -KW_ECONFIG);
	CHECK(s == NULL);
	if (strstr(err, needle) == NULL) {
		fprintf(stderr, "for %s: want \"%s\" in \"%s\"\n", uri, needle, err);
		check_failures++;
	}
	/* The PIN tried never shows up. */
	CHECK(strstr(err, "9999") == NULL);
	CHECK(strstr(err, P11_PIN) == NULL);
}

static void test_refusals(void)
{
	expect_refused("pkcs11:token=kwtest?pin-value=9999", module, "wrong PIN");
	expect_refused("pkcs11:token=nosuch?pin-value=9999", module, "no token matches");
	expect_refused("pkcs11:token=nosuch?pin-value=9999", module, "kwtest");
	expect_refused("pkcs11:token=kwtest?pin-value=9999", "/nonexistent/libnone.so",
	               "cannot be loaded");
	expect_refused("pkcs11:token=kwtest?pin-value=9999", NULL, "--pkcs11-module");
	expect_refused("pkcs11:token=kwtest;object=nosuch?pin-value=" P11_PIN, module,
	               "no private key");
	expect_refused("pkcs11:token=kwtest;type=cert?pin-value=" P11_PIN, module,
	               "selects no private key");
	expect_refused("http://example.com/", module, "not a PKCS#11 URI");
	expect_refused("pkcs11:token=kwtest", module, "needs a PIN");
	/* Every pin-value is blanked: a repeated one, one whose PIN has a ';' (allowed in
	 * a query value), and one in capitals that p11-kit refuses. */
	expect_refused("pkcs11:token=kwtest?pin-value=9999&pin-value=9999", module, "wrong PIN");
	expect_refused("pkcs11:token=kwtest?pin-value=12;9999", module, "wrong PIN");
	expect_refused("pkcs11:token=kwtest?PIN-VALUE=9999", module, "not a PKCS#11 URI");
	expect_refused("pkcs11:token=kwtest?pin-value=9999;x&module-path=/nonexistent/libnone.so",
	               module, "cannot be loaded");
}

/* pin-source is a file, checked like key files; its trailing newline is not part of the PIN. */
static void test_pin_source(void)
{
	struct kwd_p11_set *s = NULL;
	char err[512] = "", uri[4200];
	const char *pin = join(dir, "pin");

	CHECK(write_text(pin, P11_PIN "\n", 0644) == 0);
	snprintf(uri, sizeof(uri), "pkcs11:token=kwtest;object=p256?pin-source=file:%s", pin);
	CHECK_EQ(load1(uri, module, &s, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "chmod 600") != NULL);
	CHECK(chmod(pin, 0600) == 0);
	CHECK(load1(uri, module, &s, err, sizeof(err)) == 0);
	CHECK(s != NULL && kwd_p11_set_count(s) == 1);
	kwd_p11_set_unref(s);
	s = NULL;
	snprintf(uri, sizeof(uri), "pkcs11:token=kwtest?pin-source=%s/nonexistent", dir);
	CHECK(load1(uri, module, &s, err, sizeof(err)) != 0);
	CHECK(s == NULL);
}

/* Threads sharing one token with a session limit lower than their number. */
struct thr {
	const struct kwd_p11_key *k;
	int failures;
};

static void *sign_loop(void *arg)
{
	struct thr *t = arg;
	uint8_t in[32] = {1}, out[KW_RESULT_MAX];
	size_t olen;
	for (int i = 0; i < 50; i++)
		if (kwd_p11_run(t->k, kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256), in, 32, out,
		                sizeof(out), &olen) != KW_ERR_NONE ||
		    !verify(p256, kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256), out, olen, in, 32))
			t->failures++;
	return NULL;
}

static void test_session_limit(void)
{
	const char *uris[] = {"pkcs11:token=kwtest;object=p256?pin-value=" P11_PIN};
	struct kwd_p11_options o = {.module = module, .uris = uris, .nuris = 1, .max_sessions = 2};
	struct kwd_p11_set *s = NULL;
	char err[512];
	pthread_t th[4];
	struct thr t[4];

	CHECK(kwd_p11_load(&o, &s, err, sizeof(err)) == 0);
	if (s == NULL)
		return;
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){kwd_p11_set_key(s, 0), 0};
		CHECK(pthread_create(&th[i], NULL, sign_loop, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(t[i].failures, 0);
	}
	kwd_p11_set_unref(s);
}

/* Token keys in a keystore: found as file keys are; a file key with a token key's SKI is refused.
 */
static void test_keystore(void)
{
	struct kwd_p11_set *s = NULL;
	struct kwd_keystore *ks = NULL;
	char err[1024] = "";
	uint8_t ski[KW_SKI_LEN];
	EVP_PKEY *other = gen_ec("P-256");
	char *kdir = make_tmpdir();

	CHECK(load1("pkcs11:token=kwtest?pin-value=" P11_PIN, module, &s, err, sizeof(err)) == 0);
	if (s == NULL || kdir == NULL)
		goto out;
	struct kwd_keystore_options o = {.p11 = s};
	CHECK(kwd_keystore_load(NULL, &o, &ks, err, sizeof(err)) == 0);
	CHECK(ks != NULL && kwd_keystore_count(ks) == 4);
	CHECK(kw_key_ski(p384, ski) == 0);
	const struct kwd_key *k = ks != NULL ? kwd_keystore_find_ski(ks, ski) : NULL;
	CHECK(k != NULL && k->p11 != NULL && k->label != NULL && strcmp(k->label, "p384") == 0);
	CHECK(k != NULL && k->type == KW_KEY_EC && EVP_PKEY_eq(k->pkey, p384) == 1);
	kwd_keystore_free(ks);
	ks = NULL;

	/* Beside a file key: both served; a file key is not a token key. */
	CHECK(write_key(join(kdir, "other.key"), other, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(kwd_keystore_load(kdir, &o, &ks, err, sizeof(err)) == 0);
	CHECK(ks != NULL && kwd_keystore_count(ks) == 5);
	CHECK(kw_key_ski(other, ski) == 0);
	k = ks != NULL ? kwd_keystore_find_ski(ks, ski) : NULL;
	CHECK(k != NULL && k->p11 == NULL && k->label == NULL);
	kwd_keystore_free(ks);
	ks = NULL;

	/* The same key as a file and on the token: refused, naming both. */
	CHECK(write_key(join(kdir, "dup.key"), p256, FMT_PKCS8_PEM, 0600) == 0);
	CHECK_EQ(kwd_keystore_load(kdir, &o, &ks, err, sizeof(err)), -KW_ECONFIG);
	CHECK(ks == NULL);
	CHECK(strstr(err, "dup.key") != NULL &&
	      strstr(err, "pkcs11:token=kwtest;object=p256") != NULL);
out:
	kwd_keystore_free(ks);
	kwd_p11_set_unref(s); /* the keystore held its own reference */
	EVP_PKEY_free(other);
	rm_tree(kdir);
}

/* shim_counter finds a counter of the p11_shim module (already loaded). */
static atomic_int *shim_counter(const char *shim, const char *name)
{
	void *h = dlopen(shim, RTLD_NOW | RTLD_NOLOAD);
	atomic_int *c = h != NULL ? dlsym(h, name) : NULL;
	if (h != NULL)
		dlclose(h); /* drops only the reference RTLD_NOLOAD took */
	return c;
}

/*
 * A token granting only the login session: operations take turns on it --
 * four threads at once, with a reload searching the token on that session
 * meanwhile -- and a failing device replaces it (logging in again). No
 * second session is ever opened.
 */
static void shim_one_session(const char *shim, struct kwd_p11_options *o)
{
	struct kwd_p11_set *s = NULL, *s2 = NULL;
	uint8_t in[32] = {9}, out[KW_RESULT_MAX];
	const struct kw_opcode_desc *d = kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256);
	size_t olen;
	char err[512];
	pthread_t th[4];
	struct thr t[4];

	setenv("KW_SHIM_MAX_SESSIONS", "1", 1);
	CHECK(kwd_p11_load(o, &s, err, sizeof(err)) == 0);
	if (s == NULL) {
		fprintf(stderr, "shim load at one session: %s\n", err);
		return;
	}
	atomic_int *open_max = shim_counter(shim, "kw_shim_open_max");
	atomic_int *fail = shim_counter(shim, "kw_shim_fail");
	CHECK(open_max != NULL && fail != NULL);
	if (open_max == NULL || fail == NULL)
		goto out;
	const struct kwd_p11_key *k = kwd_p11_set_key(s, 0);
	CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
	CHECK(verify(p256, d, out, olen, in, 32));
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){k, 0};
		CHECK(pthread_create(&th[i], NULL, sign_loop, &t[i]) == 0);
	}
	CHECK(kwd_p11_load(o, &s2, err, sizeof(err)) == 0); /* a reload meanwhile */
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(t[i].failures, 0);
	}
	if (s2 != NULL) {
		const struct kwd_p11_key *k2 = kwd_p11_set_key(s2, 0);
		CHECK(k2 != NULL && k2->token == k->token);
		CHECK_EQ(kwd_p11_run(k2, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
		CHECK(verify(p256, d, out, olen, in, 32));
	}
	atomic_store(fail, 1);
	CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_INTERNAL);
	atomic_store(fail, 0);
	CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
	CHECK(verify(p256, d, out, olen, in, 32));
	CHECK_EQ(atomic_load(open_max), 1);
out:
	kwd_p11_set_unref(s2);
	kwd_p11_set_unref(s);
	kwd_p11_wait_teardowns();
}

/*
 * A token with a session limit (CKR_SESSION_COUNT past it) and a failing
 * device, through p11_shim in front of SoftHSM2.
 */
static void test_shim(void)
{
	const char *shim = getenv("KW_P11_SHIM");
	const char *uris[] = {"pkcs11:token=kwtest;object=p256?pin-value=" P11_PIN};
	struct kwd_p11_options o = {.module = shim, .uris = uris, .nuris = 1};
	struct kwd_p11_set *s = NULL;
	uint8_t in[32] = {7}, out[KW_RESULT_MAX];
	size_t olen;
	char err[512];

	if (shim == NULL) {
		fprintf(stderr, "KW_P11_SHIM is not set: the session-limit tests are skipped\n");
		return;
	}
	kwd_p11_wait_teardowns(); /* the shim shares SoftHSM2 with no other set */
	setenv("KW_SHIM_REAL", module, 1);

	shim_one_session(shim, &o);

	/* One more session: four threads share it, none fails, the limit holds. */
	setenv("KW_SHIM_MAX_SESSIONS", "2", 1);
	CHECK(kwd_p11_load(&o, &s, err, sizeof(err)) == 0);
	if (s == NULL) {
		fprintf(stderr, "shim load: %s\n", err);
		check_failures++;
		return;
	}
	const struct kwd_p11_key *k = kwd_p11_set_key(s, 0);
	const struct kw_opcode_desc *d = kw_opcode_desc(KW_OP_ECDSA_SIGN_SHA256);
	pthread_t th[4];
	struct thr t[4];
	for (int i = 0; i < 4; i++) {
		t[i] = (struct thr){k, 0};
		CHECK(pthread_create(&th[i], NULL, sign_loop, &t[i]) == 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(t[i].failures, 0);
	}
	atomic_int *open_max = shim_counter(shim, "kw_shim_open_max");
	atomic_int *refusals = shim_counter(shim, "kw_shim_count_refusals");
	atomic_int *fail = shim_counter(shim, "kw_shim_fail");
	CHECK(open_max != NULL && refusals != NULL && fail != NULL);
	if (open_max == NULL || refusals == NULL || fail == NULL)
		goto out;
	CHECK(atomic_load(open_max) <= 2);
	CHECK(atomic_load(refusals) >= 1); /* the one-session token refused a second one */

	/* A reload while the old set holds every session the token grants: the new set
	 * shares the token's login and sessions instead of needing more, and signs. */
	struct kwd_p11_set *s2 = NULL;
	CHECK(kwd_p11_load(&o, &s2, err, sizeof(err)) == 0);
	if (s2 == NULL) {
		fprintf(stderr, "reload at the session limit: %s\n", err);
	} else {
		const struct kwd_p11_key *k2 = kwd_p11_set_key(s2, 0);
		CHECK(k2 != NULL && k2->token == k->token);
		CHECK_EQ(kwd_p11_run(k2, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
		CHECK(verify(p256, d, out, olen, in, 32));
		kwd_p11_set_unref(s2);
		kwd_p11_wait_teardowns();
		/* The old set keeps the token's login after the new one went. */
		CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
	}
	CHECK(atomic_load(open_max) <= 2);

	/* A failing device: that request gets 0x08, the session is replaced, the next works. */
	atomic_store(fail, 1);
	CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_INTERNAL);
	atomic_store(fail, 0);
	CHECK_EQ(kwd_p11_run(k, d, in, 32, out, sizeof(out), &olen), KW_ERR_NONE);
	CHECK(verify(p256, d, out, olen, in, 32));
out:
	kwd_p11_set_unref(s);
	kwd_p11_wait_teardowns();
	unsetenv("KW_SHIM_MAX_SESSIONS");
}

int main(void)
{
	if ((module = p11_module()) == NULL) {
		fprintf(stderr, "SoftHSM2 is not installed (apt-get install softhsm2): skipped\n");
		return P11_SKIP;
	}
	dir = make_tmpdir();
	rsa2048 = gen_rsa(2048);
	p256 = gen_ec("P-256");
	p384 = gen_ec("P-384");
	ed25519 = gen_named("ED25519");
	if (dir == NULL || p11_setup(dir) != 0 || p11_init_token("kwtest") != 0 ||
	    p11_import(dir, "kwtest", rsa2048, "rsa2048", "01") != 0 ||
	    p11_import(dir, "kwtest", p256, "p256", "02") != 0 ||
	    p11_import(dir, "kwtest", p384, "p384", "03") != 0 ||
	    p11_import(dir, "kwtest", ed25519, "ed25519", "04") != 0) {
		fprintf(stderr, "cannot make a SoftHSM2 token (softhsm2-util): skipped\n");
		rm_tree(dir);
		return P11_SKIP;
	}
	test_load_and_ops();
	test_decrypt_edges();
	test_select();
	test_refusals();
	test_pin_source();
	test_session_limit();
	test_keystore();
	test_shim();
	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(ed25519);
	kwd_p11_wait_teardowns();
	rm_tree(dir);
	CHECK_DONE();
}
