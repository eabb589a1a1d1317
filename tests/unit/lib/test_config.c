/* test_config.c - flags, config files, precedence and the error messages operators see. */
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
static unsigned idle_timeout;
static const char *const modes[] = {"fast", "slow", NULL};

static struct kw_option opts[] = {
	{.name = "listen", .type = KW_OPT_STRING, .dest = &listen_addr, .arg = "ADDR:PORT"},
	{.name = "workers", .type = KW_OPT_UINT, .dest = &workers, .min = 1, .max = 64},
	{.name = "verbose", .type = KW_OPT_BOOL, .dest = &verbose},
	{.name = "mode", .type = KW_OPT_ENUM, .dest = &mode, .choices = modes},
	{.name = "servers", .type = KW_OPT_LIST, .dest = &servers},
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
	err[0] = '\0';
	return kw_config_parse(opts, argc, argv, "usage: t", NULL, NULL, err, 512);
}

int main(void)
{
	char err[512];

	char *a1[] = {"t", "--listen", "1.2.3.4:5", "--workers=8", "--verbose", "--mode", "slow",
		      "--servers", "a:1,b:2", "--servers", "c:3"};
	CHECK_EQ(parse(11, a1, err), 0);
	CHECK(strcmp(listen_addr, "1.2.3.4:5") == 0);
	CHECK_EQ(workers, 8);
	CHECK(verbose);
	CHECK_EQ(mode, 1);
	CHECK(servers && strcmp(servers[0], "a:1") == 0 && strcmp(servers[2], "c:3") == 0 &&
	      servers[3] == NULL);

	/* File values, with comments and quotes; flags override whatever their position. */
	write_file("# comment\nlisten = 9.9.9.9:1  # inline\nworkers = 4\n\nservers = \"x:1, y:2\"\n"
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

	kw_config_free(opts);
	CHECK_DONE();
}
