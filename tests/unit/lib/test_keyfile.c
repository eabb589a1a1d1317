/* test_keyfile.c - key files: walk (flat, recursive, order), permissions, parsing, wiping. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/pem.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/keyfile.h"

static char dir[64];
static char seen[8][256];
static int nseen;

static const char *join(const char *name)
{
	static char p[256];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	return p;
}

static void write_file(const char *name, const void *data, size_t len, mode_t mode)
{
	FILE *f = fopen(join(name), "wb");
	CHECK(f != NULL);
	if (f == NULL)
		return;
	fwrite(data, 1, len, f);
	fclose(f);
	chmod(join(name), mode);
}

static void write_key(const char *name, EVP_PKEY *k, const char *pass, mode_t mode)
{
	BIO *b = BIO_new(BIO_s_mem());
	if (pass != NULL)
		PEM_write_bio_PKCS8PrivateKey(b, k, EVP_aes_128_cbc(), NULL, 0, NULL, (void *)pass);
	else
		PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
	char *p;
	long n = BIO_get_mem_data(b, &p);
	write_file(name, p, (size_t)n, mode);
	BIO_free(b);
}

static int record(void *arg, struct kw_keyfile *f, char *err, size_t errlen)
{
	(void)arg, (void)err, (void)errlen;
	CHECK(f->len > 0 && f->data != NULL);
	if (nseen < 8)
		snprintf(seen[nseen++], sizeof(seen[0]), "%s", f->path + strlen(dir));
	kw_keyfile_cleanup(f);
	CHECK(f->data == NULL && f->path == NULL && f->len == 0);
	return 0;
}

static int walk(bool recursive, bool allow, char *err, size_t errlen)
{
	struct kw_keyfile_options o = {
	    .recursive = recursive, .allow_group_readable = allow, .mode_fix = " or say so"};
	nseen = 0;
	return kw_keyfile_load_dir(dir, &o, record, NULL, err, errlen);
}

static void test_walk(EVP_PKEY *k)
{
	char err[512];
	CHECK(mkdir(join("sub"), 0700) == 0);
	CHECK(mkdir(join("dir.key"), 0700) == 0);   /* a directory named *.key is no key */
	CHECK(mkfifo(join("fifo.key"), 0600) == 0); /* nor a FIFO, which must not hang */
	write_key("b.key", k, NULL, 0600);
	write_key("a.key", k, NULL, 0600);
	write_key("sub/c.key", k, NULL, 0600);
	write_file("README", "not a key\n", 10, 0644);
	CHECK(symlink("a.key", join("link.key")) == 0);

	CHECK_EQ(walk(false, false, err, sizeof(err)), 3);
	CHECK(strcmp(seen[0], "/a.key") == 0); /* name order */
	CHECK(strcmp(seen[1], "/b.key") == 0);
	CHECK(strcmp(seen[2], "/link.key") == 0);
	CHECK_EQ(walk(true, false, err, sizeof(err)), 4);
	CHECK(strcmp(seen[3], "/sub/c.key") == 0);

	/* A trailing slash does not show in the names. */
	char slashed[80];
	snprintf(slashed, sizeof(slashed), "%s//", dir);
	struct kw_keyfile_options o = {0};
	nseen = 0;
	CHECK_EQ(kw_keyfile_load_dir(slashed, &o, record, NULL, err, sizeof(err)), 3);
	CHECK(strcmp(seen[0], "/a.key") == 0);

	/* Group-readable: refused with the fix, unless allowed. */
	chmod(join("sub/c.key"), 0640);
	CHECK_EQ(walk(true, false, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "sub/c.key: readable by group or others (mode 0640); chmod 600 ") !=
	      NULL);
	CHECK(strstr(err, " or say so") != NULL);
	CHECK_EQ(walk(true, true, err, sizeof(err)), 4);
	CHECK_EQ(walk(false, false, err, sizeof(err)), 3); /* flat: sub/ is not read */

	char missing[80];
	snprintf(missing, sizeof(missing), "%s/none", dir);
	CHECK(kw_keyfile_load_dir(missing, &o, record, NULL, err, sizeof(err)) == -ENOENT);
	CHECK(strstr(err, "none: cannot read the directory") != NULL);
}

static int fail_second(void *arg, struct kw_keyfile *f, char *err, size_t errlen)
{
	int *n = arg;
	kw_keyfile_cleanup(f);
	if (++*n == 2) {
		snprintf(err, errlen, "stop here");
		return -KW_ECONFIG;
	}
	return 0;
}

static void test_callback_stops_the_walk(void)
{
	char err[128];
	int n = 0;
	struct kw_keyfile_options o = {.recursive = true};
	CHECK_EQ(kw_keyfile_load_dir(dir, &o, fail_second, &n, err, sizeof(err)), -KW_ECONFIG);
	CHECK_EQ(n, 2);
	CHECK(strcmp(err, "stop here") == 0);
}

static int parse(const char *name, EVP_PKEY **out, char *err, size_t errlen)
{
	struct kw_keyfile f;
	struct kw_keyfile_options o = {0};
	int rc = kw_keyfile_read(AT_FDCWD, join(name), join(name), &o, &f, err, errlen);
	if (rc != 0)
		return rc;
	rc = kw_keyfile_parse(&f, NULL, out, err, errlen);
	kw_keyfile_cleanup(&f);
	return rc;
}

static void test_parse(EVP_PKEY *k)
{
	char err[512];
	EVP_PKEY *got = NULL;
	CHECK_EQ(parse("a.key", &got, err, sizeof(err)), 0);
	CHECK(got != NULL && EVP_PKEY_eq(got, k) == 1);
	EVP_PKEY_free(got);

	/* DER too. */
	unsigned char *der = NULL;
	int n = i2d_PrivateKey(k, &der);
	CHECK(n > 0);
	write_file("der.key", der, (size_t)n, 0600);
	OPENSSL_free(der);
	CHECK_EQ(parse("der.key", &got, err, sizeof(err)), 0);
	EVP_PKEY_free(got);

	write_key("enc.key", k, "secret", 0600);
	CHECK_EQ(parse("enc.key", &got, err, sizeof(err)), -KW_ECONFIG);
	CHECK(got == NULL);
	CHECK(strstr(err, "enc.key: encrypted keys are not supported; decrypt with openssl pkey") !=
	      NULL);
	write_file("junk.key", "-----BEGIN junk", 15, 0600);
	CHECK_EQ(parse("junk.key", &got, err, sizeof(err)), -KW_ECONFIG);
	CHECK(strstr(err, "junk.key: not a private key") != NULL);
	CHECK_EQ(parse("nothere.key", &got, err, sizeof(err)), -ENOENT);
	CHECK(strstr(err, "nothere.key: cannot open") != NULL);
	CHECK_EQ(parse("fifo.key", &got, err, sizeof(err)), 1); /* not a regular file */
}

static void test_no_password(void)
{
	char buf[8];
	int asked = 0;
	CHECK_EQ(kw_pem_no_password(buf, sizeof(buf), 0, &asked), -1);
	CHECK_EQ(asked, 1);
	CHECK_EQ(kw_pem_no_password(buf, sizeof(buf), 0, NULL), -1);
	CHECK(kw_keyfile_name_ok("x.key"));
	CHECK(!kw_keyfile_name_ok(".key"));
	CHECK(!kw_keyfile_name_ok("x.key.bak"));
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/keyway-keyfile-XXXXXX");
	CHECK(mkdtemp(dir) != NULL);
	EVP_PKEY *k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	CHECK(k != NULL);
	test_walk(k);
	test_callback_stops_the_walk();
	test_parse(k);
	test_no_password();
	EVP_PKEY_free(k);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	CHECK(system(cmd) == 0);
	CHECK_DONE();
}
