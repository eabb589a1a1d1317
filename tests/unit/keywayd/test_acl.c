/*
 * test_acl.c - --acl rules: every CLIENT form against identities, KEYS by
 * SKI, label and *, OPS and its default, the denial reasons, and the
 * FILE:LINE messages of malformed files.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "acl.h"
#include "check.h"

static char path[] = "/tmp/kwd-test-acl-XXXXXX";

static struct kwd_acl *load(const char *text, char *err, size_t errlen)
{
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fputs(text, f);
	fclose(f);
	struct kwd_acl *acl = NULL;
	err[0] = '\0';
	if (kwd_acl_load(path, &acl, err, errlen) < 0)
		return NULL;
	return acl;
}

static struct kwd_key key_with(uint8_t fill, const char *label)
{
	struct kwd_key k = {0};
	memset(k.ski, fill, sizeof(k.ski));
	k.label = (char *)label;
	return k;
}

static void test_rules(void)
{
	char err[512];
	/* SKIs: 20 bytes of 0x11, 0x22; spki: 32 bytes of 0xab. */
	char text[1024];
	snprintf(
	    text, sizeof(text),
	    "# a comment line\n"
	    "\n"
	    "allow spki:%s 1111111111111111111111111111111111111111 sign,decrypt\n"
	    "allow dns:Edge.Example 22:22:22:22:22:22:22:22:22:22:22:22:22:22:22:22:22:22:22:22"
	    "  # trailing comment\n"
	    "allow cn:front label:hsm\n"
	    "allow uid:1000 * decrypt\n",
	    "abababababababababababababababababababababababababababababababab");
	struct kwd_acl *acl = load(text, err, sizeof(err));
	CHECK(acl != NULL);
	if (acl == NULL) {
		fprintf(stderr, "%s\n", err);
		return;
	}
	CHECK_EQ(kwd_acl_count(acl), 4);

	struct kwd_key k1 = key_with(0x11, NULL), k2 = key_with(0x22, NULL),
	               hsm = key_with(0x33, "hsm");
	struct kwd_identity spki = {.has_cert = true}, dns = {.has_cert = true},
	                    cn = {.has_cert = true, .cn = "front"},
	                    uid = {.has_uid = true, .uid = 1000},
	                    nobody = {.has_cert = true, .cn = "other"};
	memset(spki.spki, 0xab, sizeof(spki.spki));
	char *names[] = {"x.example", "edge.example"};
	dns.dns = names;
	dns.ndns = 2;

	CHECK_EQ(kwd_acl_check(acl, &spki, &k1, KWD_ACL_SIGN), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &spki, &k1, KWD_ACL_DECRYPT), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &spki, &k2, KWD_ACL_SIGN), KWD_ACL_DENY_KEY);
	/* DNS names compare without case; the default OPS is sign. */
	CHECK_EQ(kwd_acl_check(acl, &dns, &k2, KWD_ACL_SIGN), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &dns, &k2, KWD_ACL_DECRYPT), KWD_ACL_DENY_OP);
	CHECK_EQ(kwd_acl_check(acl, &cn, &hsm, KWD_ACL_SIGN), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &cn, &k1, KWD_ACL_SIGN), KWD_ACL_DENY_KEY);
	CHECK_EQ(kwd_acl_check(acl, &uid, &k2, KWD_ACL_DECRYPT), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &uid, &k2, KWD_ACL_SIGN), KWD_ACL_DENY_OP);
	CHECK_EQ(kwd_acl_check(acl, &nobody, &k1, KWD_ACL_SIGN), KWD_ACL_DENY_CLIENT);
	/* A certificate's CN "1000" is not uid 1000, nor a uid a certificate. */
	struct kwd_identity uid_other = {.has_uid = true, .uid = 1001};
	CHECK_EQ(kwd_acl_check(acl, &uid_other, &k1, KWD_ACL_DECRYPT), KWD_ACL_DENY_CLIENT);
	CHECK_EQ(kwd_acl_op_of(KW_OP_RSA_DECRYPT), KWD_ACL_DECRYPT);
	CHECK_EQ(kwd_acl_op_of(KW_OP_RSA_DECRYPT_RAW), KWD_ACL_DECRYPT);
	CHECK_EQ(kwd_acl_op_of(KW_OP_ECDSA_SIGN_SHA256), KWD_ACL_SIGN);
	CHECK(strcmp(kwd_acl_reason_name(KWD_ACL_DENY_OP), "operation") == 0);
	kwd_acl_free(acl);

	acl = load("allow * *\n", err, sizeof(err));
	CHECK(acl != NULL);
	CHECK_EQ(kwd_acl_check(acl, &nobody, &k1, KWD_ACL_SIGN), KWD_ACL_ALLOW);
	CHECK_EQ(kwd_acl_check(acl, &uid, &hsm, KWD_ACL_DECRYPT), KWD_ACL_DENY_OP);
	kwd_acl_free(acl);

	/* An empty file allows nothing. */
	acl = load("# nothing yet\n", err, sizeof(err));
	CHECK(acl != NULL && kwd_acl_count(acl) == 0);
	CHECK_EQ(kwd_acl_check(acl, &uid, &k1, KWD_ACL_SIGN), KWD_ACL_DENY_CLIENT);
	kwd_acl_free(acl);
}

static void expect_error(const char *text, const char *want)
{
	char err[512], full[600];
	struct kwd_acl *acl = load(text, err, sizeof(err));
	CHECK(acl == NULL);
	kwd_acl_free(acl);
	snprintf(full, sizeof(full), "%s:%s", path, want);
	if (strncmp(err, full, strlen(full)) != 0 || strstr(err, "; fix: ") == NULL) {
		fprintf(stderr, "for %s: got '%s', want '%s...; fix: ...'\n", text, err, full);
		CHECK(0);
	}
}

static void test_errors(void)
{
	expect_error("allow * *\nallow\n", "2: `allow` needs CLIENT and KEYS");
	expect_error("permit * *\n", "1: unknown rule 'permit'");
	expect_error("allow spki:abcd *\n", "1: 'spki:abcd': not a SHA-256 in hex");
	expect_error("allow dns: *\n", "1: 'dns:': empty name");
	expect_error("allow uid:-1 *\n", "1: 'uid:-1': not a decimal uid");
	expect_error("allow * 1234\n", "1: '1234': not a key");
	expect_error("allow * label:\n", "1: 'label:': empty label");
	expect_error("allow * * sign,verify\n", "1: unknown operation 'verify'");
	expect_error("allow * * sign extra\n", "1: unexpected 'extra' after OPS");
	expect_error("allow * ,\n", "1: no keys");
}

int main(void)
{
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	close(fd);
	test_rules();
	test_errors();
	unlink(path);
	CHECK_DONE();
}
