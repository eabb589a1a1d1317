/*
 * quic.c - `keyway quic protect|unprotect|initial|bench`: RFC 9001 packet
 * protection from the command line, in lowercase hex without separators,
 * through the engines of include/keyway/quic.h. Exit 0 success, 1 failure
 * (bad hex, authentication), 2 usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/quic.h"

#define EXIT_USAGE 2
#define PKT_MAX 65535

/* parse runs the option parser; returns -1 to go on, else the exit code. */
static int parse(struct kw_option *opts, int argc, char **argv, const char *usage)
{
	char err[512];
	int npos = 0;
	int rc = kw_config_parse(opts, argc, argv, usage, NULL, &npos, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "keyway quic %s: %s\n", argv[0], err);
		return EXIT_USAGE;
	}
	return -1;
}

/* unhex_arg decodes a hex argument into out (room for max); returns its length or -1. */
static long unhex_arg(const char *cmd, const char *what, const char *hex, uint8_t *out, size_t max)
{
	size_t n = strlen(hex);
	if (n % 2 != 0 || n / 2 > max || kw_unhex(out, n / 2, hex) < 0) {
		fprintf(stderr, "keyway quic %s: --%s: expected at most %zu bytes of hex\n", cmd,
		        what, max);
		return -1;
	}
	return (long)(n / 2);
}

/* parse_u64 reads a decimal number below 2^62 (a packet number). */
static int parse_u64(const char *cmd, const char *what, const char *s, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != 0 || s[0] == '-' || v >= (1ull << 62)) {
		fprintf(stderr, "keyway quic %s: --%s: expected a number below 2^62\n", cmd, what);
		return -1;
	}
	*out = v;
	return 0;
}

static int make_key(const char *cmd, const char *cipher, const char *secret_hex,
                    struct kw_quic_key **k)
{
	uint8_t secret[KW_QUIC_SECRET_MAX];
	int c = kw_quic_cipher_parse(cipher);
	if (c < 0) {
		fprintf(stderr,
		        "keyway quic %s: --cipher: aes-128-gcm, aes-256-gcm or chacha20-poly1305\n",
		        cmd);
		return -1;
	}
	long n = unhex_arg(cmd, "secret", secret_hex, secret, sizeof(secret));
	if (n < 0)
		return -1;
	if ((size_t)n != kw_quic_secret_len(c)) {
		fprintf(stderr, "keyway quic %s: --secret: %s needs a %zu-byte secret\n", cmd,
		        cipher, kw_quic_secret_len(c));
		return -1;
	}
	int rc = kw_quic_key_new(k, c, secret, (size_t)n);
	if (rc < 0)
		fprintf(stderr, "keyway quic %s: %s\n", cmd, kw_strerror(rc));
	return rc < 0 ? -1 : 0;
}

static int make_engine(const char *cmd, const char *name, struct kw_quic_engine **e)
{
	int rc = kw_quic_engine_new(e, name);
	if (rc == -ENOENT)
		fprintf(stderr, "keyway quic %s: --engine %s: not available here (evp, ipsec-mb)\n",
		        cmd, name);
	else if (rc < 0)
		fprintf(stderr, "keyway quic %s: %s\n", cmd, kw_strerror(rc));
	return rc < 0 ? -1 : 0;
}

static void print_hex(const char *name, const uint8_t *p, size_t n)
{
	char *hex = malloc(2 * n + 1);
	if (hex == NULL)
		return;
	kw_hex(hex, p, n);
	if (name != NULL)
		printf("%s=%s\n", name, hex);
	else
		printf("%s\n", hex);
	free(hex);
}

/* The options every packet command shares. */
struct pkt_args {
	char *cipher, *secret, *engine;
	struct kw_quic_key *key;
	struct kw_quic_engine *e;
};

/* pkt_setup makes the key and the engine of a; returns 0 or 1 (printed why). */
static int pkt_setup(const char *cmd, struct pkt_args *a)
{
	if (make_key(cmd, a->cipher, a->secret, &a->key) < 0 ||
	    make_engine(cmd, a->engine, &a->e) < 0)
		return 1;
	return 0;
}

static void pkt_cleanup(struct pkt_args *a, struct kw_option *opts)
{
	kw_quic_engine_free(a->e);
	kw_quic_key_unref(a->key);
	kw_config_free(opts);
}

#define PKT_OPTS(a)                                                                                \
	KW_OPT_STR("cipher", &(a).cipher, "C", "aes-128-gcm, aes-256-gcm or chacha20-poly1305",    \
	           .required = true),                                                              \
	    KW_OPT_STR("secret", &(a).secret, "HEX", "the traffic secret", .required = true),      \
	    KW_OPT_STR("engine", &(a).engine, "E", "evp, ipsec-mb or auto (default)")

static const char protect_usage[] =
    "usage: keyway quic protect --cipher C --secret HEX --header HEX "
    "--payload HEX [--pn N] [--engine E]\n\nPrint the protected packet in hex.";

static int cmd_protect(int argc, char **argv)
{
	struct pkt_args a = {.engine = "auto"};
	char *header = NULL, *payload = NULL, *pn_arg = NULL;
	struct kw_option opts[] = {
	    PKT_OPTS(a),
	    KW_OPT_STR("header", &header, "HEX",
	               "the unprotected header up to the truncated packet number",
	               .required = true),
	    KW_OPT_STR("payload", &payload, "HEX", "the plaintext payload", .required = true),
	    KW_OPT_STR("pn", &pn_arg, "N",
	               "the full packet number (default: the header's truncated one)"),
	    KW_OPT_END,
	};
	static uint8_t buf[PKT_MAX + KW_QUIC_TAG_LEN];
	int rc = parse(opts, argc, argv, protect_usage);
	if (rc >= 0)
		return rc;
	rc = 1;
	long hl = unhex_arg("protect", "header", header, buf, PKT_MAX);
	long pl = hl < 0 ? -1 : unhex_arg("protect", "payload", payload, buf + hl, PKT_MAX - hl);
	if (pl < 0 || pkt_setup("protect", &a) != 0)
		goto out;
	struct kw_quic_pkt p = {
	    .buf = buf, .len = hl + pl, .hdr_len = hl, .key = a.key, .dir = KW_QUIC_DIR_SEAL};
	unsigned pn_len = hl > 0 ? (buf[0] & 3) + 1 : 0;
	if (hl < 1 + (long)pn_len) {
		fprintf(stderr, "keyway quic protect: --header: shorter than its packet number\n");
		goto out;
	}
	for (unsigned i = 0; i < pn_len; i++)
		p.pn = p.pn << 8 | buf[hl - pn_len + i];
	if (pn_arg != NULL && parse_u64("protect", "pn", pn_arg, &p.pn) < 0)
		goto out;
	kw_quic_engine_run(a.e, &p, 1);
	if (p.status < 0) {
		fprintf(stderr, "keyway quic protect: %s\n",
		        p.status == -EINVAL ? "packet too short for a header-protection sample"
		                            : kw_strerror(p.status));
		goto out;
	}
	print_hex(NULL, buf, p.out_len);
	rc = 0;
out:
	pkt_cleanup(&a, opts);
	return rc;
}

static const char unprotect_usage[] =
    "usage: keyway quic unprotect --cipher C --secret HEX --packet HEX "
    "--dcid-len N --largest-pn N [--engine E]\n\n"
    "Print the unprotected header, the packet number and the payload.";

static int cmd_unprotect(int argc, char **argv)
{
	struct pkt_args a = {.engine = "auto"};
	char *packet = NULL, *largest = NULL;
	unsigned dcid_len = 0;
	struct kw_option opts[] = {
	    PKT_OPTS(a),
	    KW_OPT_STR("packet", &packet, "HEX", "the protected packet", .required = true),
	    KW_OPT_NUM("dcid-len", &dcid_len, "N", "a short header's connection ID length", 0,
	               KW_QUIC_CID_MAX, .required = true),
	    KW_OPT_STR("largest-pn", &largest, "N",
	               "the largest packet number received in its space", .required = true),
	    KW_OPT_END,
	};
	static uint8_t buf[PKT_MAX];
	struct kw_quic_header h;
	int rc = parse(opts, argc, argv, unprotect_usage);
	if (rc >= 0)
		return rc;
	rc = 1;
	uint64_t largest_pn;
	long n = unhex_arg("unprotect", "packet", packet, buf, sizeof(buf));
	if (n < 0 || parse_u64("unprotect", "largest-pn", largest, &largest_pn) < 0 ||
	    pkt_setup("unprotect", &a) != 0)
		goto out;
	if (kw_quic_header_parse(&h, buf, (size_t)n, dcid_len) < 0 || h.pn_offset == 0) {
		fprintf(stderr, "keyway quic unprotect: not a protected QUIC v1 packet\n");
		goto out;
	}
	struct kw_quic_pkt p = {.buf = buf,
	                        .len = h.pkt_len,
	                        .pn_offset = h.pn_offset,
	                        .largest_pn = largest_pn,
	                        .key = a.key,
	                        .key1 = a.key,
	                        .dir = KW_QUIC_DIR_OPEN};
	kw_quic_engine_run(a.e, &p, 1);
	if (p.status < 0) {
		fprintf(stderr, "keyway quic unprotect: %s\n",
		        p.status == -EINVAL ? "packet too short for a header-protection sample"
		        : p.status == -KW_ECRYPTO ? "authentication failed"
		                                  : kw_strerror(p.status));
		goto out;
	}
	print_hex("header", buf, p.hdr_len);
	printf("pn=%llu\n", (unsigned long long)p.pn);
	print_hex("payload", buf + p.hdr_len, p.out_len);
	rc = 0;
out:
	pkt_cleanup(&a, opts);
	return rc;
}

/* print_material prints side's key, iv and hp derived from its Initial secret. */
static int print_material(const char *side, const uint8_t *secret)
{
	struct kw_quic_key *k;
	struct kw_quic_key_material m;
	char name[32];

	if (kw_quic_key_new(&k, KW_QUIC_CIPHER_AES_128_GCM, secret, KW_QUIC_INITIAL_SECRET_LEN) < 0)
		return -1;
	kw_quic_key_material(k, &m);
	snprintf(name, sizeof(name), "%s_key", side);
	print_hex(name, m.key, m.key_len);
	snprintf(name, sizeof(name), "%s_iv", side);
	print_hex(name, m.iv, m.iv_len);
	snprintf(name, sizeof(name), "%s_hp", side);
	print_hex(name, m.hp, m.hp_len);
	kw_quic_key_unref(k);
	return 0;
}

static const char initial_usage[] =
    "usage: keyway quic initial --dcid HEX\n\n"
    "Print the QUIC v1 Initial secrets and keys of a connection ID.";

static int cmd_initial(int argc, char **argv)
{
	char *dcid_hex = NULL;
	struct kw_option opts[] = {
	    KW_OPT_STR("dcid", &dcid_hex, "HEX",
	               "the client's Destination Connection ID (0-20 bytes)", .required = true),
	    KW_OPT_END,
	};
	uint8_t dcid[KW_QUIC_CID_MAX];
	struct kw_quic_initial in;
	int rc = parse(opts, argc, argv, initial_usage);
	if (rc >= 0)
		return rc;
	rc = 1;
	long n = unhex_arg("initial", "dcid", dcid_hex, dcid, sizeof(dcid));
	if (n >= 0 && kw_quic_initial_secrets(&in, dcid, (size_t)n) == 0) {
		print_hex("client_initial_secret", in.client, sizeof(in.client));
		print_hex("server_initial_secret", in.server, sizeof(in.server));
		if (print_material("client", in.client) == 0 &&
		    print_material("server", in.server) == 0)
			rc = 0;
	}
	kw_config_free(opts);
	return rc;
}

static const struct {
	const char *name;
	int (*run)(int argc, char **argv);
} quic_commands[] = {
    {"protect", cmd_protect},
    {"unprotect", cmd_unprotect},
    {"initial", cmd_initial},
    {"bench", kw_cli_quic_bench},
};

int kw_cli_quic(const struct subcommand *sc, int argc, char **argv)
{
	const char *usage = "usage: keyway quic protect|unprotect|initial|bench [OPTIONS]\n"
	                    "'keyway quic COMMAND --help' describes one command.\n";
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? EXIT_USAGE : 0;
	}
	for (size_t i = 0; i < sizeof(quic_commands) / sizeof(quic_commands[0]); i++)
		if (strcmp(argv[1], quic_commands[i].name) == 0)
			return quic_commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "keyway quic: unknown command '%s'\n%s", argv[1], usage);
	return EXIT_USAGE;
}
