/* test_keystore.c - loading key directories: formats, types, refusals, lookups. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "check.h"
#include "keygen.h"
#include "keystore.h"
#include "keyway/err.h"
#include "keyway/keyid.h"

static EVP_PKEY *rsa2048, *rsa3072, *p256, *p384, *p521, *ed25519;

/* load loads dir and returns the code; err receives the message. */
static int load(const char *dir, bool allow, struct kwd_keystore **ks, char *err, size_t errlen)
{
	struct kwd_keystore_options o = {.allow_group_readable = allow};
	return kwd_keystore_load(dir, &o, ks, err, errlen);
}

static void check_key(const struct kwd_keystore *ks, EVP_PKEY *want, enum kw_key_type type,
                      unsigned bits, const char *path_suffix)
{
	uint8_t ski[KW_SKI_LEN], digest[KW_DIGEST_LEN];
	CHECK(kw_key_ski(want, ski) == 0);
	const struct kwd_key *k = kwd_keystore_find_ski(ks, ski);
	CHECK(k != NULL);
	if (k == NULL)
		return;
	CHECK_EQ(k->type, type);
	CHECK_EQ(k->bits, bits);
	CHECK(EVP_PKEY_eq(k->pkey, want) == 1);
	CHECK(kwd_keystore_at(ks, k->index) == k);
	size_t pl = strlen(k->path), sl = strlen(path_suffix);
	CHECK(pl >= sl && strcmp(k->path + pl - sl, path_suffix) == 0);
	CHECK(strstr(k->path, "//") == NULL);
	if (type == KW_KEY_RSA) {
		CHECK(kw_key_digest(want, digest) == 0);
		CHECK(k->has_digest);
		CHECK(kwd_keystore_find_digest(ks, digest) == k);
	} else {
		CHECK(!k->has_digest);
	}
}

static void test_load_all(void)
{
	char *dir = make_tmpdir();
	char err[512];
	struct kwd_keystore *ks = NULL;

	CHECK(dir != NULL);
	CHECK(mkdir(join(dir, "sub"), 0700) == 0);
	CHECK(mkdir(join(dir, "sub/nested"), 0700) == 0);
	CHECK(write_key(join(dir, "a.key"), rsa2048, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(write_key(join(dir, "b.key"), rsa3072, FMT_TRAD_PEM, 0600) == 0);
	CHECK(write_key(join(dir, "sub/nested/c.key"), p256, FMT_DER, 0600) == 0);
	CHECK(write_key(join(dir, "d.key"), p384, FMT_TRAD_PEM, 0400) == 0);
	CHECK(write_key(join(dir, "sub/e.key"), p521, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(write_key(join(dir, "sub/f.key"), ed25519, FMT_DER, 0600) == 0);
	/* Not *.key: ignored even though unreadable as a key or world-readable. */
	CHECK(write_text(join(dir, "README"), "not a key\n", 0644) == 0);
	CHECK(write_key(join(dir, "other.pem"), rsa2048, FMT_PKCS8_PEM, 0644) == 0);
	CHECK(write_text(join(dir, ".key"), "hidden, no stem\n", 0644) == 0);
	/* A symlink beside its target is the same file: loaded once. */
	CHECK(symlink("a.key", join(dir, "link.key")) == 0);
	/* A symlinked directory loop is not followed. */
	CHECK(symlink("..", join(dir, "sub/loop")) == 0);

	int rc = load(dir, false, &ks, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "load: %d %s\n", rc, err);
	CHECK_EQ(rc, 0);
	if (ks != NULL) {
		CHECK_EQ(kwd_keystore_count(ks), 6);
		for (size_t i = 0; i < kwd_keystore_count(ks); i++)
			CHECK_EQ(kwd_keystore_at(ks, i)->index, i);
		CHECK(kwd_keystore_at(ks, 6) == NULL);
		check_key(ks, rsa2048, KW_KEY_RSA, 2048, "/a.key");
		check_key(ks, rsa3072, KW_KEY_RSA, 3072, "/b.key");
		check_key(ks, p256, KW_KEY_EC, 256, "/sub/nested/c.key");
		check_key(ks, p384, KW_KEY_EC, 384, "/d.key");
		check_key(ks, p521, KW_KEY_EC, 521, "/sub/e.key");
		check_key(ks, ed25519, KW_KEY_ED25519, 256, "/sub/f.key");

		uint8_t zero[KW_DIGEST_LEN] = {0}, other[KW_DIGEST_LEN];
		memset(other, 0xab, sizeof(other));
		CHECK(kwd_keystore_find_ski(ks, zero) == NULL);
		CHECK(kwd_keystore_find_ski(ks, other) == NULL);
		CHECK(kwd_keystore_find_digest(ks, zero) == NULL);
		CHECK(kwd_keystore_find_digest(ks, other) == NULL);

		/* A second load is a distinct keystore with a distinct id. */
		struct kwd_keystore *ks2 = NULL;
		CHECK_EQ(load(dir, false, &ks2, err, sizeof(err)), 0);
		if (ks2 != NULL)
			CHECK(kwd_keystore_id(ks2) != kwd_keystore_id(ks));
		kwd_keystore_free(ks2);
	}
	kwd_keystore_free(ks);
	kwd_keystore_free(NULL);

	/* Trailing slashes don't leak into the paths. */
	char slashed[4200];
	snprintf(slashed, sizeof(slashed), "%s//", dir);
	ks = NULL;
	CHECK_EQ(load(slashed, false, &ks, err, sizeof(err)), 0);
	if (ks != NULL)
		check_key(ks, rsa2048, KW_KEY_RSA, 2048, "/a.key");
	kwd_keystore_free(ks);
	rm_tree(dir);
}

/* expect_refused loads dir, expects failure with every needle in the message. */
static void expect_refused(const char *dir, bool allow, int want_rc, const char *n1, const char *n2,
                           const char *n3)
{
	struct kwd_keystore *ks = (struct kwd_keystore *)1;
	char err[512];
	int rc = load(dir, allow, &ks, err, sizeof(err));
	CHECK_EQ(rc, want_rc);
	CHECK(ks == NULL);
	const char *needles[] = {n1, n2, n3};
	for (int i = 0; i < 3; i++) {
		if (needles[i] != NULL && strstr(err, needles[i]) == NULL) {
			fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, needles[i]);
			check_failures++;
		}
	}
	if (rc == 0)
		kwd_keystore_free(ks);
}

static void test_permissions(void)
{
	char *dir = make_tmpdir();
	char err[512];
	struct kwd_keystore *ks = NULL;
	const char *p = join(dir, "g.key");

	CHECK(write_key(p, p256, FMT_PKCS8_PEM, 0640) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, "chmod 600", "--allow-group-readable-keys");
	CHECK_EQ(load(dir, true, &ks, err, sizeof(err)), 0);
	CHECK(ks != NULL && kwd_keystore_count(ks) == 1);
	kwd_keystore_free(ks);

	CHECK(chmod(p, 0604) == 0); /* others only, still refused */
	expect_refused(dir, false, -KW_ECONFIG, p, "chmod 600", NULL);
	CHECK(chmod(p, 0600) == 0);
	ks = NULL;
	CHECK_EQ(load(dir, false, &ks, err, sizeof(err)), 0);
	kwd_keystore_free(ks);

	/* A symlink to a group-readable file: the target's mode counts. */
	CHECK(chmod(p, 0660) == 0);
	CHECK(mkdir(join(dir, "s"), 0700) == 0);
	CHECK(rename(p, join(dir, "s/g.pem")) == 0);
	CHECK(symlink("s/g.pem", p) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, "chmod 600", NULL);
	rm_tree(dir);
}

static void test_encrypted(void)
{
	static const char *names[] = {"pkcs8.key", "trad.key", "der.key"};
	for (int i = 0; i < 3; i++) {
		char *dir = make_tmpdir();
		const char *p = join(dir, names[i]);
		FILE *f = open_mode(p, 0600);
		CHECK(f != NULL);
		unsigned char pass[] = "secret";
		int ok = 0;
		if (i == 0)
			ok = PEM_write_PrivateKey(f, p256, EVP_aes_256_cbc(), pass, 6, NULL, NULL);
		else if (i == 1) {
			BIO *b = BIO_new_fp(f, BIO_NOCLOSE);
			ok = PEM_write_bio_PrivateKey_traditional(b, rsa2048, EVP_aes_128_cbc(),
			                                          pass, 6, NULL, NULL);
			BIO_free(b);
		} else
			ok = i2d_PKCS8PrivateKey_fp(f, ed25519, EVP_aes_256_cbc(), (char *)pass, 6,
			                            NULL, NULL);
		CHECK(ok == 1);
		fclose(f);
		expect_refused(dir, false, -KW_ECONFIG, p, "encrypted keys are not supported",
		               "openssl pkey");
		rm_tree(dir);
	}
}

static void refuse_key(EVP_PKEY *key, enum key_format fmt, const char *n1)
{
	char *dir = make_tmpdir();
	const char *p = join(dir, "x.key");
	CHECK(key != NULL);
	CHECK(write_key(p, key, fmt, 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, n1, NULL);
	rm_tree(dir);
}

static void test_unsupported(void)
{
	EVP_PKEY *k;

	k = gen_rsa(1024);
	refuse_key(k, FMT_PKCS8_PEM, "1024 bits");
	EVP_PKEY_free(k);
	k = gen_ec("secp256k1");
	refuse_key(k, FMT_TRAD_PEM, "secp256k1");
	EVP_PKEY_free(k);
	k = gen_named("ED448");
	refuse_key(k, FMT_PKCS8_PEM, "ED448");
	EVP_PKEY_free(k);
	k = gen_named("X25519");
	refuse_key(k, FMT_PKCS8_PEM, "X25519");
	EVP_PKEY_free(k);
	/* Public keys are not private keys. */
	refuse_key(rsa2048, FMT_PUBKEY_PEM, "not a private key");
}

static void test_garbage(void)
{
	char *dir = make_tmpdir();
	const char *p = join(dir, "bad.key");
	CHECK(write_text(p, "this is not a key\n", 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, "not a private key", NULL);
	CHECK(write_text(p, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
	                 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, "not a private key", NULL);
	CHECK(write_text(p, "", 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, p, "not a private key", NULL);
	rm_tree(dir);
}

static void test_duplicate(void)
{
	char *dir = make_tmpdir();
	CHECK(mkdir(join(dir, "z"), 0700) == 0);
	CHECK(write_key(join(dir, "one.key"), rsa2048, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(write_key(join(dir, "z/two.key"), rsa2048, FMT_DER, 0600) == 0);
	CHECK(write_key(join(dir, "three.key"), p256, FMT_DER, 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, join(dir, "one.key"), join(dir, "z/two.key"),
	               "same key");
	/* A hard link is the same file, not a duplicate. */
	CHECK(unlink(join(dir, "z/two.key")) == 0);
	CHECK(link(join(dir, "one.key"), join(dir, "z/two.key")) == 0);
	struct kwd_keystore *ks = NULL;
	char err[512];
	CHECK_EQ(load(dir, false, &ks, err, sizeof(err)), 0);
	CHECK(ks != NULL && kwd_keystore_count(ks) == 2);
	kwd_keystore_free(ks);
	rm_tree(dir);
}

static void test_empty(void)
{
	char *dir = make_tmpdir();
	CHECK(write_text(join(dir, "notes.txt"), "x", 0600) == 0);
	CHECK(mkdir(join(dir, "empty.key"), 0700) == 0); /* a directory, not a key file */
	expect_refused(dir, false, -KW_ECONFIG, "no *.key files under", dir, NULL);
	/* Keys named *.pem: the message names them and says to rename them. */
	CHECK(write_key(join(dir, "web.pem"), p256, FMT_PKCS8_PEM, 0600) == 0);
	expect_refused(dir, false, -KW_ECONFIG, "1 *.pem file (web.pem)", "loads only *.key",
	               "fix: rename");
	expect_refused(dir, false, -KW_ECONFIG, join(dir, "web.key"), NULL, NULL);
	CHECK(unlink(join(dir, "web.pem")) == 0);
	expect_refused(join(dir, "missing"), false, -ENOENT, "missing", NULL, NULL);
	expect_refused(join(dir, "notes.txt"), false, -ENOTDIR, "notes.txt", NULL, NULL);
	rm_tree(dir);
}

int main(void)
{
	rsa2048 = gen_rsa(2048);
	rsa3072 = gen_rsa(3072);
	p256 = gen_ec("P-256");
	p384 = gen_ec("P-384");
	p521 = gen_ec("P-521");
	ed25519 = gen_named("ED25519");
	CHECK(rsa2048 && rsa3072 && p256 && p384 && p521 && ed25519);

	test_load_all();
	test_permissions();
	test_encrypted();
	test_unsupported();
	test_garbage();
	test_duplicate();
	test_empty();

	EVP_PKEY_free(rsa2048);
	EVP_PKEY_free(rsa3072);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(ed25519);
	CHECK(ERR_peek_error() == 0);
	CHECK_DONE();
}
