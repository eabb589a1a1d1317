/* test_version.c - the --version line: its parts, the parser's built-in flag, truncation. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "check.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/version.h"

/* capture runs kw_config_parse on argv with stdout sent to a file and returns what it printed. */
static int capture(char **argv, int argc, char *out, size_t out_len)
{
	struct kw_option opts[] = {{0}};
	char err[256] = "";
	char path[] = "/tmp/kwverXXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	fflush(stdout);
	int saved = dup(STDOUT_FILENO);
	dup2(fd, STDOUT_FILENO);
	int rc = kw_config_parse(opts, argc, argv, "usage: t", NULL, NULL, err, sizeof(err));
	fflush(stdout);
	dup2(saved, STDOUT_FILENO);
	close(saved);
	ssize_t n = pread(fd, out, out_len - 1, 0);
	out[n > 0 ? n : 0] = '\0';
	close(fd);
	unlink(path);
	return rc;
}

int main(void)
{
	char line[512], expect[512];

	CHECK(strlen(kw_version()) > 0);
	CHECK(strchr(kw_version(), '.') != NULL);
	CHECK(strncmp(kw_version_revision(), "git ", 4) == 0 ||
	      strncmp(kw_version_revision(), "package ", 8) == 0);
	CHECK(strstr(kw_version_features(), "backend-keyless") != NULL);

	int n = kw_version_format(line, sizeof(line), "/usr/bin/keywayd");
	snprintf(expect, sizeof(expect), "keywayd %s (%s) OpenSSL %s; features: %s", kw_version(),
	         kw_version_revision(), OpenSSL_version(OPENSSL_VERSION_STRING),
	         kw_version_features());
	CHECK(strcmp(line, expect) == 0);
	CHECK_EQ(n, strlen(expect));

	/* NULL names the running program (this test's own basename). */
	kw_version_format(line, sizeof(line), NULL);
	CHECK(strncmp(line, "unit_lib_test_version ", 22) == 0);

	/* A short buffer truncates and terminates; the return still tells the full length. */
	char small[8];
	CHECK_EQ(kw_version_format(small, sizeof(small), "keywayd"), n);
	CHECK(strcmp(small, "keywayd") == 0);

	/* --version is a built-in of the parser: it prints one line and returns 1, like --help. */
	char out[1024];
	char *a1[] = {"t", "--version"};
	CHECK_EQ(capture(a1, 2, out, sizeof(out)), 1);
	kw_version_format(expect, sizeof(expect), NULL);
	CHECK(strncmp(out, expect, strlen(expect)) == 0 && strcmp(out + strlen(expect), "\n") == 0);

	/* It wins over options that would fail, as --help does, and --help lists it. */
	char *a2[] = {"t", "--nonsense", "--version"};
	CHECK_EQ(capture(a2, 3, out, sizeof(out)), 1);
	char *a3[] = {"t", "--help"};
	CHECK_EQ(capture(a3, 2, out, sizeof(out)), 1);
	CHECK(strstr(out, "--version") != NULL);

	/* After "--" it is a positional argument, not the flag. */
	char *a4[] = {"t", "--", "--version"};
	CHECK_EQ(capture(a4, 3, out, sizeof(out)), -KW_ECONFIG);
	CHECK_DONE();
}
