/* test_config.c - flags, config files, precedence and the error messages operators see. */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "keyway/config.h"
#include "keyway/err.h"

static char *listen_addr;
static unsigned workers;
static bool verbose;
static int mode;
static char **servers;
static char **uris;
static unsigned idle_timeout;
static const char *const modes[] = {"fast", "slow", NULL};

static struct kw_option opts[] = {
    {.name = "listen",
     .type = KW_OPT_STRING,
     .dest = &listen_addr,
     .arg = "ADDR:PORT",
     .alias = "bind"},
    {.name = "workers", .type = KW_OPT_UINT, .dest = &workers, .min = 1, .max = 64},
    {.name = "verbose", .type = KW_OPT_BOOL, .dest = &verbose},
    {.name = "mode", .type = KW_OPT_ENUM, .dest = &mode, .choices = modes},
    {.name = "servers", .type = KW_OPT_LIST, .dest = &servers},
    {.name = "uri", .type = KW_OPT_LIST, .dest = &uris, .whole = true},
    {.name = "idle-timeout", .type = KW_OPT_UINT, .dest = &idle_timeout},
    {0},
};

static char path[64];

static void write_file(const char *text)
{
	strcpy(path, "/tmp/kwcfgXXXXXX");
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
	close(fd);
}

static int parse(int argc, char **argv, char *err)
{
	kw_config_free(opts);
	listen_addr = (char *)"default";
	workers = 2;
	verbose = false;
	mode = 0;
	servers = NULL;
	uris = NULL;
	err[0] = '\0';
	return kw_config_parse(opts, argc, argv, "usage: t", NULL, NULL, err, 512);
}

/* file_error parses a file holding text and returns the error's first line. */
static const char *file_error(const char *text, char *err)
{
	write_file(text);
	char *a[] = {"t", "--config", path};
	CHECK_EQ(parse(3, a, err), -KW_ECONFIG);
	unlink(path);
	CHECK(strchr(err, '\n') == NULL); /* one line */
	return err;
}

static bool starts_with_file_line(const char *err, unsigned line, const char *key)
{
	char want[128];
	snprintf(want, sizeof(want), "%s:%u: %s: ", path, line, key);
	return strncmp(err, want, strlen(want)) == 0;
}

static void test_rules(void)
{
	char err[512];

	/* Numbers are decimal: 010 is ten; no base prefix, sign or space. */
	char *n1[] = {"t", "--workers", "010"};
	CHECK_EQ(parse(3, n1, err), 0);
	CHECK_EQ(workers, 10);
	static const char *const bad_numbers[] = {"0x10", "+5", " 5",  "5 ",
	                                          "-1",   "",   "1e1", "99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad_numbers) / sizeof(bad_numbers[0]); i++) {
		char *n2[] = {"t", "--idle-timeout", (char *)bad_numbers[i]};
		CHECK_EQ(parse(3, n2, err), -KW_ECONFIG);
		CHECK(strncmp(err, "--idle-timeout: '", 17) == 0);
	}
	unsigned u = 0;
	CHECK_EQ(kw_config_parse_uint("4294967295", 0, UINT_MAX, &u), 0);
	CHECK(u == UINT_MAX);
	CHECK_EQ(kw_config_parse_uint("4294967296", 0, UINT_MAX, &u), -ERANGE);

	/* One spelling of booleans, in any case; 1/0 are not among them. */
	static const char *const yes[] = {"on", "true", "yes", "ON", "True"};
	static const char *const no[] = {"off", "false", "no", "OFF"};
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		char arg[32];
		snprintf(arg, sizeof(arg), "--verbose=%s", yes[i]);
		char *b1[] = {"t", arg};
		CHECK_EQ(parse(2, b1, err), 0);
		CHECK(verbose);
	}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++) {
		bool v = true;
		CHECK_EQ(kw_config_parse_bool(no[i], &v), 0);
		CHECK(!v);
	}
	bool v;
	CHECK_EQ(kw_config_parse_bool("1", &v), -EINVAL);
	CHECK_EQ(kw_config_parse_bool("enabled", &v), -EINVAL);
	CHECK(starts_with_file_line(file_error("\nverbose = 1\n", err), 2, "verbose"));
	CHECK(strstr(err, "expected on|off|true|false|yes|no") != NULL);

	/* Quotes protect '#'; outside them a '#' after whitespace starts a comment. */
	write_file("listen = \"a #1\"   # the comment\nservers = x#y # z\n");
	char *q1[] = {"t", "--config", path};
	CHECK_EQ(parse(3, q1, err), 0);
	CHECK(strcmp(listen_addr, "a #1") == 0);
	CHECK(servers && strcmp(servers[0], "x#y") == 0 && servers[1] == NULL);
	unlink(path);
	CHECK(starts_with_file_line(file_error("workers = 2\nlisten = \"a#b\n", err), 2, "listen"));
	CHECK(strstr(err, "never closed") != NULL);
	CHECK(starts_with_file_line(file_error("listen = \"a\" b\n", err), 1, "listen"));

	/* An option's value is never another option. */
	char *f1[] = {"t", "--listen", "--help"};
	CHECK_EQ(parse(3, f1, err), -KW_ECONFIG); /* an error, not the help text */
	CHECK(strcmp(err, "--listen: missing value ADDR:PORT: '--help' is an option, not a value "
	                  "(if it is the value, write --listen=--help)") == 0);
	char *f2[] = {"t", "--listen=--help"};
	CHECK_EQ(parse(2, f2, err), 0);
	CHECK(strcmp(listen_addr, "--help") == 0);
	char *f3[] = {"t", "--config", "--workers", "3"};
	CHECK_EQ(parse(4, f3, err), -KW_ECONFIG);
	CHECK(strncmp(err, "--config: missing value FILE: '--workers'", 41) == 0);
	char *f4[] = {"t", "--workers", "3", "--verbose", "--mode", "fast"}; /* a bare bool */
	CHECK_EQ(parse(6, f4, err), 0);
	CHECK(verbose && workers == 3 && mode == 0);

	/* A value from a file: FILE:LINE: key: first; the same check on a flag: --key:. */
	write_file("# x.conf\nlisten = 24543\n");
	char *e1[] = {"t", "--config", path};
	CHECK_EQ(parse(3, e1, err), 0);
	CHECK_EQ(kw_config_errorf(opts, "listen", err, 512, "'%s' is not ADDR:PORT", listen_addr),
	         -KW_ECONFIG);
	CHECK(starts_with_file_line(err, 2, "listen"));
	CHECK(strstr(err, ": listen: '24543' is not ADDR:PORT") != NULL);
	char *e2[] = {"t", "--config", path, "--listen", "24543"};
	CHECK_EQ(parse(5, e2, err), 0);
	kw_config_errorf(opts, "listen", err, 512, "'%s' is not ADDR:PORT", listen_addr);
	CHECK(strcmp(err, "--listen: '24543' is not ADDR:PORT") == 0);
	unlink(path);
	CHECK(starts_with_file_line(file_error("workers = 0x10\n", err), 1, "workers"));
	CHECK(starts_with_file_line(file_error("mode = quick\n", err), 1, "mode"));

	/* An alias (an option's older name) sets the same option, as a flag and as a key. */
	char *a1[] = {"t", "--bind", "1.2.3.4:5"};
	CHECK_EQ(parse(3, a1, err), 0);
	CHECK(strcmp(listen_addr, "1.2.3.4:5") == 0);
	write_file("bind = 6.7.8.9:10\n");
	char *a2[] = {"t", "--config", path};
	CHECK_EQ(parse(3, a2, err), 0);
	CHECK(strcmp(listen_addr, "6.7.8.9:10") == 0);
	unlink(path);
	char *a3[] = {"t", "--bind=x", "--listen", "y:1"}; /* the flag given last wins */
	CHECK_EQ(parse(4, a3, err), 0);
	CHECK(strcmp(listen_addr, "y:1") == 0);
}

int main(void)
{
	char err[512];

	char *a1[] = {"t",    "--listen",  "1.2.3.4:5", "--workers=8", "--verbose", "--mode",
	              "slow", "--servers", "a:1,b:2",   "--servers",   "c:3"};
	CHECK_EQ(parse(11, a1, err), 0);
	CHECK(strcmp(listen_addr, "1.2.3.4:5") == 0);
	CHECK_EQ(workers, 8);
	CHECK(verbose);
	CHECK_EQ(mode, 1);
	CHECK(servers && strcmp(servers[0], "a:1") == 0 && strcmp(servers[2], "c:3") == 0 &&
	      servers[3] == NULL);

	/* A whole-value list keeps commas: a PKCS#11 URI may hold them unescaped. */
	char *au[] = {"t", "--uri", "pkcs11:object=a,b;token=t", "--uri", "pkcs11:token=u"};
	CHECK_EQ(parse(5, au, err), 0);
	CHECK(uris && strcmp(uris[0], "pkcs11:object=a,b;token=t") == 0 &&
	      strcmp(uris[1], "pkcs11:token=u") == 0 && uris[2] == NULL);

	/* File values, with comments and quotes; flags override whatever their position. */
	write_file(
	    "# comment\nlisten = 9.9.9.9:1  # inline\nworkers = 4\n\nservers = \"x:1, y:2\"\n"
	    "verbose = yes\n");
	char *a2[] = {"t", "--workers", "6", "--config", path};
	CHECK_EQ(parse(5, a2, err), 0);
	CHECK(strcmp(listen_addr, "9.9.9.9:1") == 0);
	CHECK_EQ(workers, 6);
	CHECK(verbose);
	CHECK(servers && strcmp(servers[1], "y:2") == 0);
	char *a2b[] = {"t", "--config", path, "--servers", "z:9"};
	CHECK_EQ(parse(5, a2b, err), 0);
	CHECK(servers && strcmp(servers[0], "z:9") == 0 && servers[1] == NULL);
	unlink(path);

	/* '_' and '-' are the same in names, so openssl.cnf-style keys work as they are. */
	write_file("idle_timeout = 7\n");
	char *a2c[] = {"t", "--config", path, "--idle_timeout", "9"};
	CHECK_EQ(parse(3, a2c, err), 0);
	CHECK_EQ(idle_timeout, 7);
	CHECK_EQ(parse(5, a2c, err), 0);
	CHECK_EQ(idle_timeout, 9);
	unlink(path);

	/* Unknown key: file and line, and a suggestion. */
	write_file("listen = 1.1.1.1:1\nworker = 3\n");
	char *a3[] = {"t", "--config", path};
	CHECK_EQ(parse(3, a3, err), -KW_ECONFIG);
	char want[128];
	snprintf(want, sizeof(want), "%s:2: unknown key 'worker' (did you mean 'workers'?)", path);
	CHECK(strstr(err, want) != NULL);
	unlink(path);

	/* Bad value names the range. */
	write_file("workers = 100\n");
	CHECK_EQ(parse(3, a3, err), -KW_ECONFIG);
	CHECK(strstr(err, ":1: workers: '100' is not valid; expected a whole number from 1 to 64"));
	unlink(path);

	write_file("mode = medium\n");
	CHECK_EQ(parse(3, a3, err), -KW_ECONFIG);
	CHECK(strstr(err, "expected one of fast|slow"));
	unlink(path);

	write_file("just words\n");
	CHECK_EQ(parse(3, a3, err), -KW_ECONFIG);
	CHECK(strstr(err, ":1: expected 'key = value'"));
	unlink(path);

	write_file("workers = 3\nworkers = 4\n");
	CHECK_EQ(parse(3, a3, err), -KW_ECONFIG);
	CHECK(strstr(err, ":2: 'workers' is already set on line 1"));
	unlink(path);

	char *a4[] = {"t", "--config", "/nonexistent/kw.conf"};
	CHECK_EQ(parse(3, a4, err), -KW_ECONFIG);
	CHECK(strstr(err, "/nonexistent/kw.conf") != NULL);

	char *a5[] = {"t", "--listn", "x"};
	CHECK_EQ(parse(3, a5, err), -KW_ECONFIG);
	CHECK(strstr(err, "did you mean '--listen'"));

	char *a6[] = {"t", "--workers"};
	CHECK_EQ(parse(2, a6, err), -KW_ECONFIG);
	CHECK(strstr(err, "--workers: missing value"));

	char *a7[] = {"t", "stray"};
	CHECK_EQ(parse(2, a7, err), -KW_ECONFIG);

	/* Required options. */
	opts[0].required = true;
	char *a8[] = {"t"};
	CHECK_EQ(parse(1, a8, err), -KW_ECONFIG);
	CHECK(strstr(err, "--listen ADDR:PORT is required"));
	opts[0].required = false;

	test_rules();
	kw_config_free(opts);
	CHECK_DONE();
}
