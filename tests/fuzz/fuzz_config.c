/*
 * fuzz_config.c - libFuzzer harness for the option parser every program
 * shares (kw_config_parse): a config file and a command line. The input is
 * pieces separated by NUL bytes: the first is the config file's text (when
 * not empty, the command line starts with --config and its path), the
 * others are the arguments that follow. The file lives in one memfd
 * rewritten per input, so nothing touches the disk. The parser must not
 * crash or leak (kw_config_free releases everything), must keep every
 * value within its option's rules on success, and must explain a failure.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memfd_create */
#endif
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include "keyway/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ARGS 32

static const char *const modes[] = {"fast", "safe", "off", NULL};
static const char *const default_list[] = {"a", NULL};

static struct {
	char *name, *path;
	unsigned port, count;
	bool verbose, tls;
	int mode;
	char **peers;
} o;

static struct kw_option table[] = {
    KW_OPT_STR("name", &o.name, "NAME", "a string", .required = true),
    KW_OPT_STR("path", &o.path, "FILE", "a string with a default"),
    KW_OPT_NUM("port", &o.port, "PORT", "a bounded number", 1, 65535),
    KW_OPT_NUM("count", &o.count, "N", "an unbounded number", 0, 0),
    KW_OPT_FLAG("verbose", &o.verbose, "a bare flag"),
    KW_OPT_ONOFF("tls", &o.tls, "a flag with a value"),
    KW_OPT_CHOICE("mode", &o.mode, "fast|safe|off", "a choice", modes),
    KW_OPT_MANY("peer", &o.peers, "ADDR", "a list"),
    KW_OPT_END,
};

static void set_defaults(void)
{
	o.name = NULL;
	o.path = (char *)"/default/path";
	o.port = 8080;
	o.count = 7;
	o.verbose = false;
	o.tls = true;
	o.mode = 1;
	o.peers = (char **)default_list;
}

/* file_path returns the path of the memfd holding the config text, made once. */
static const char *file_path(void)
{
	static char path[64];
	static int fd = -1;

	if (fd < 0) {
		fd = memfd_create("fuzz_config", MFD_CLOEXEC);
		if (fd < 0)
			abort();
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	}
	return path;
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
	int fd = atoi(path + strlen("/proc/self/fd/"));
	if (ftruncate(fd, 0) != 0 || (n > 0 && pwrite(fd, p, n, 0) != (ssize_t)n))
		abort();
}

/* check_values holds the rules of a successful parse. */
static void check_values(void)
{
	if (o.name == NULL || o.path == NULL || o.port < 1 || o.port > 65535 || o.mode < 0 ||
	    o.mode > 2)
		abort();
	for (char **p = o.peers; p != NULL && *p != NULL; p++) {
		size_t n = strlen(*p);
		if (n == 0 || strchr(*p, ',') != NULL || **p == ' ' || (*p)[n - 1] == ' ')
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *copy = malloc(size + 1), *argv[MAX_ARGS + 4], *positional[MAX_ARGS + 4];
	char err[512];
	int argc = 0, npositional = -1;

	if (copy == NULL)
		abort();
	memcpy(copy, data, size);
	copy[size] = '\0';
	size_t flen = strlen(copy);
	argv[argc++] = (char *)"fuzz";
	if (flen > 0) {
		write_file(file_path(), data, flen);
		argv[argc++] = (char *)"--config";
		argv[argc++] = (char *)file_path();
	}
	for (size_t i = flen + 1; i <= size && argc < MAX_ARGS + 3; i += strlen(copy + i) + 1)
		argv[argc++] = copy + i;
	argv[argc] = NULL;

	set_defaults();
	err[0] = '\0';
	/* Half the inputs refuse positional arguments. */
	int rc = kw_config_parse(table, argc, argv, "usage: fuzz [options]",
	                         size % 2 ? positional : NULL, &npositional, err, sizeof(err));
	if (rc == 0) {
		check_values();
		if (npositional < 0 || npositional >= argc)
			abort();
	} else if (rc < 0 && (err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL)) {
		abort();
	} else if (rc != 0 && rc != 1 && rc >= 0) {
		abort();
	}
	kw_config_free(table);
	free(copy);
	return 0;
}
