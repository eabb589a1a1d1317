/* test_keyset.c - fallback keys by SKI: a directory of keys, lookup, refusals. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/keyset.h"
#include "keywayd/keygen.h"

static EVP_PKEY *found(const struct kw_keyset *ks, EVP_PKEY *k)
{
	uint8_t ski[KW_SKI_LEN];
	CHECK_EQ(kw_key_ski(k, ski), 0);
	return kw_keyset_find(ks, ski);
}

/* Keys of every type and form load; each is found by its SKI; the same key twice counts once. */
static void test_lookup(void)
{
	char *dir = make_tmpdir(), err[512];
	EVP_PKEY *rsa = gen_rsa(2048), *ec = gen_ec("P-256"), *ed = gen_named("ED25519");
	EVP_PKEY *absent = gen_ec("P-256");
	struct kw_keyset *ks = NULL;

	CHECK_EQ(write_key(join(dir, "rsa.key"), rsa, FMT_TRAD_PEM, 0600), 0);
	CHECK_EQ(write_key(join(dir, "rsa-again.key"), rsa, FMT_PKCS8_PEM, 0600), 0);
	CHECK_EQ(write_key(join(dir, "ec.key"), ec, FMT_DER, 0600), 0);
	CHECK_EQ(write_key(join(dir, "ed.key"), ed, FMT_PKCS8_PEM, 0400), 0);
	/* Only *.key files are read: this one would be refused for its mode. */
	CHECK_EQ(write_key(join(dir, "absent.pem"), absent, FMT_PKCS8_PEM, 0644), 0);

	CHECK_EQ(kw_keyset_load(dir, &ks, err, sizeof(err)), 0);
	CHECK(ks != NULL);
	/* Nothing is found until the keys are decoded. */
	CHECK_EQ(kw_keyset_count(ks), 0);
	CHECK(found(ks, rsa) == NULL);
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), 0);
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), 0);
	CHECK_EQ(kw_keyset_count(ks), 3);
	CHECK(EVP_PKEY_eq(found(ks, rsa), rsa) == 1);
	CHECK(EVP_PKEY_eq(found(ks, ec), ec) == 1);
	CHECK(EVP_PKEY_eq(found(ks, ed), ed) == 1);
	CHECK(found(ks, absent) == NULL);

	/* The found key is private: it signs. */
	EVP_PKEY_CTX *c = EVP_PKEY_CTX_new_from_pkey(NULL, found(ks, ec), NULL);
	uint8_t sig[128], digest[32] = {1};
	size_t len = sizeof(sig);
	CHECK(c != NULL && EVP_PKEY_sign_init(c) == 1 &&
	      EVP_PKEY_sign(c, sig, &len, digest, sizeof(digest)) == 1);
	EVP_PKEY_CTX_free(c);

	/* A second reference keeps the keys alive after the first is dropped. */
	CHECK(kw_keyset_ref(ks) == ks);
	kw_keyset_free(ks);
	CHECK(EVP_PKEY_eq(found(ks, rsa), rsa) == 1);
	kw_keyset_free(ks);
	CHECK(kw_keyset_ref(NULL) == NULL);
	kw_keyset_free(NULL);
	CHECK(kw_keyset_find(NULL, digest) == NULL);
	CHECK_EQ(kw_keyset_count(NULL), 0);

	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(absent);
	rm_tree(dir);
}

/* A key file readable by others is refused at load, naming the file and the fix. */
static void test_refusals(void)
{
	char *dir = make_tmpdir(), err[512];
	EVP_PKEY *ec = gen_ec("P-256");
	struct kw_keyset *ks = NULL;

	CHECK_EQ(kw_keyset_load(join(dir, "missing"), &ks, err, sizeof(err)), -ENOENT);
	CHECK(ks == NULL);
	CHECK_EQ(kw_keyset_load(dir, &ks, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "no key files (*.key)") != NULL);

	CHECK_EQ(write_key(join(dir, "open.key"), ec, FMT_PKCS8_PEM, 0644), 0);
	CHECK_EQ(kw_keyset_load(dir, &ks, err, sizeof(err)), -KW_ECONFIG);
	CHECK(ks == NULL);
	CHECK(strstr(err, "open.key: readable by group or others (mode 0644)") != NULL);
	CHECK(strstr(err, "chmod 600") != NULL);

	/* A file that is no key loads (it is only read) and fails to decode, every time. */
	CHECK_EQ(remove(join(dir, "open.key")), 0);
	CHECK_EQ(write_text(join(dir, "junk.key"), "not a key\n", 0600), 0);
	CHECK_EQ(kw_keyset_load(dir, &ks, err, sizeof(err)), 0);
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "junk.key") != NULL);
	err[0] = '\0';
	CHECK_EQ(kw_keyset_prepare(ks, NULL, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "junk.key") != NULL);
	CHECK_EQ(kw_keyset_count(ks), 0);
	kw_keyset_free(ks);

	EVP_PKEY_free(ec);
	rm_tree(dir);
}

int main(void)
{
	test_lookup();
	test_refusals();
	CHECK_DONE();
}
