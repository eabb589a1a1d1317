/*
 * keyway - the command-line tool: small operator tasks around keys and
 * keyservers. Each subcommand is one entry of the table below with its own
 * option table (so `keyway SUB --help` and `--config` work as everywhere).
 *
 * Exit codes: 0 success, 1 the task failed (bad file, no answer...), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "commands.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/version.h"

#define EXIT_USAGE 2

struct subcommand {
	const char *name;
	const char *args;    /* shown after the name in usage */
	const char *summary; /* one line for `keyway help` */
	int (*run)(const struct subcommand *sc, int argc, char **argv);
};

static int cmd_help(const struct subcommand *sc, int argc, char **argv);

/*
 * parse_one_file parses a subcommand's arguments (no options yet) and
 * returns the single FILE, or NULL after printing why (*rc tells the exit).
 */
static const char *parse_one_file(const struct subcommand *sc, int argc, char **argv, int *rc)
{
	struct kw_option opts[] = {KW_OPT_END};
	char usage[256], err[512];
	const char *file = NULL;
	int npos = 0;
	char **pos = calloc((size_t)argc + 1, sizeof(*pos));

	*rc = 1;
	if (pos == NULL) {
		fprintf(stderr, "keyway %s: out of memory\n", sc->name);
		return NULL;
	}
	snprintf(usage, sizeof(usage), "usage: keyway %s %s\n\n%s.", sc->name, sc->args,
	         sc->summary);
	int prc = kw_config_parse(opts, argc, argv, usage, pos, &npos, err, sizeof(err));
	if (prc == 1) {
		*rc = 0;
	} else if (prc < 0) {
		fprintf(stderr, "keyway %s: %s\n", sc->name, err);
		*rc = EXIT_USAGE;
	} else if (npos != 1) {
		fprintf(stderr, "keyway %s: expected one FILE, got %d; usage: keyway %s %s\n",
		        sc->name, npos, sc->name, sc->args);
		*rc = EXIT_USAGE;
	} else {
		file = pos[0];
	}
	free(pos);
	return file;
}

/* load_key loads FILE's public key, or prints one line naming FILE and returns NULL. */
static EVP_PKEY *load_key(const struct subcommand *sc, const char *path)
{
	EVP_PKEY *key = NULL;
	int rc = kw_load_public_key(path, &key);
	if (rc == -KW_ECRYPTO)
		fprintf(stderr,
		        "keyway %s: %s: not a certificate, public key or unencrypted private key "
		        "(PEM or DER)\n",
		        sc->name, path);
	else if (rc < 0)
		fprintf(stderr, "keyway %s: %s: %s\n", sc->name, path, kw_strerror(rc));
	return rc < 0 ? NULL : key;
}

/*
 * key_argument parses a subcommand's single FILE and loads its public key;
 * NULL after printing why, with the exit status in *rc.
 */
static EVP_PKEY *key_argument(const struct subcommand *sc, int argc, char **argv, const char **path,
                              int *rc)
{
	*path = parse_one_file(sc, argc, argv, rc);
	if (*path == NULL)
		return NULL;
	*rc = 1;
	return load_key(sc, *path);
}

static int cmd_ski(const struct subcommand *sc, int argc, char **argv)
{
	int rc;
	const char *path;
	EVP_PKEY *key = key_argument(sc, argc, argv, &path, &rc);
	if (key == NULL)
		return rc;
	uint8_t ski[KW_SKI_LEN];
	char hex[2 * KW_SKI_LEN + 1];
	if (kw_key_ski(key, ski) < 0) {
		fprintf(stderr, "keyway %s: %s: cannot encode the public key\n", sc->name, path);
		EVP_PKEY_free(key);
		return 1;
	}
	EVP_PKEY_free(key);
	kw_hex(hex, ski, sizeof(ski));
	printf("%s\n", hex);
	return 0;
}

static int cmd_digest(const struct subcommand *sc, int argc, char **argv)
{
	int rc;
	const char *path;
	EVP_PKEY *key = key_argument(sc, argc, argv, &path, &rc);
	if (key == NULL)
		return rc;
	uint8_t digest[KW_DIGEST_LEN];
	char hex[2 * KW_DIGEST_LEN + 1];
	int drc = kw_key_digest(key, digest);
	EVP_PKEY_free(key);
	if (drc == -EINVAL) {
		fprintf(stderr,
		        "keyway %s: %s: not an RSA key (only RSA keys have a modulus digest; "
		        "use 'keyway ski')\n",
		        sc->name, path);
		return 1;
	}
	if (drc < 0) {
		fprintf(stderr, "keyway %s: %s: %s\n", sc->name, path, kw_strerror(drc));
		return 1;
	}
	kw_hex(hex, digest, sizeof(digest));
	printf("%s\n", hex);
	return 0;
}

static const struct subcommand subcommands[] = {
    {"ski", "FILE", "print the SKI (SHA-1 of the public key bits) of a certificate or key",
     cmd_ski},
    {"digest", "FILE", "print the RSA modulus digest (SHA-256 of its upper-case hex)", cmd_digest},
    {"ref", "--cert CERT", "print the KEYWAY KEY reference PEM for a certificate's key",
     kw_cli_ref},
    {"ping", "[--openssl-conf FILE]", "ask each keyserver of the provider's settings for a pong",
     kw_cli_ping},
    {"quic", "protect|unprotect|initial|bench", "QUIC packet protection (RFC 9001)", kw_cli_quic},
    {"help", "[COMMAND]", "show this list, or one command's options", cmd_help},
    {NULL, NULL, NULL, NULL},
};

static void print_help(FILE *f)
{
	fprintf(f, "usage: keyway COMMAND [ARGS]\n\nCommands:\n");
	for (const struct subcommand *sc = subcommands; sc->name; sc++) {
		char left[64];
		snprintf(left, sizeof(left), "%s %s", sc->name, sc->args);
		fprintf(f, "  %-24s %s\n", left, sc->summary);
	}
	fprintf(f, "\n'keyway COMMAND --help' describes one command; 'keyway --version' prints\n"
	           "the version, OpenSSL version and features.\n");
}

static int cmd_help(const struct subcommand *sc, int argc, char **argv)
{
	if (argc > 1) {
		for (const struct subcommand *s = subcommands; s->name; s++)
			if (strcmp(s->name, argv[1]) == 0 && s->run != cmd_help) {
				char *args[] = {argv[1], "--help", NULL};
				return s->run(s, 2, args);
			}
		fprintf(stderr, "keyway help: unknown command '%s'\n", argv[1]);
		return EXIT_USAGE;
	}
	print_help(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		print_help(stderr);
		return EXIT_USAGE;
	}
	const char *name = argv[1];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
		print_help(stdout);
		return 0;
	}
	if (strcmp(name, "--version") == 0) {
		kw_version_print(stdout, NULL);
		return 0;
	}
	for (const struct subcommand *sc = subcommands; sc->name; sc++)
		if (strcmp(sc->name, name) == 0)
			/* argv[1] becomes the subcommand's argv[0]. */
			return sc->run(sc, argc - 1, argv + 1);
	fprintf(stderr, "keyway: unknown command '%s'; 'keyway help' lists them\n", name);
	return EXIT_USAGE;
}
