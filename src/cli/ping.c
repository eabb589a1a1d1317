/*
 * ping.c - `keyway ping`: read the keyway provider's settings exactly as the
 * provider does (its openssl.cnf section, then the KEYWAY_* environment),
 * connect to every keyserver the way the provider would, and ask each for a
 * pong within timeout_ms. One line per keyserver; exit 0 only if all answer.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "remote.h"
#include "settings.h"

#define EXIT_USAGE 2

static const char payload[] = "keyway ping";

/* report prints one line for keyserver i and returns 1 if it answered well. */
static int report(const struct kwp_settings *s, struct kwp_remote *r, size_t i, struct kwp_op *op,
                  int wrc)
{
	const char *name = s->server_texts[i];

	if (wrc == 0 && op->status == 0 && op->out_len == sizeof(payload) - 1 &&
	    memcmp(op->out, payload, op->out_len) == 0) {
		printf("ok    %s  %.1f ms\n", name, (double)(op->done_ns - op->submit_ns) / 1e6);
		return 1;
	}
	if (wrc < 0) { /* abandoned: the I/O thread may still write the op */
		printf("FAIL  %s  no answer within timeout_ms=%u\n", name, s->timeout_ms);
		return 0;
	}
	const char *why = op->detail[0] ? op->detail : kw_strerror(op->status);
	if (op->status == -KW_ECONFIG)
		printf("FAIL  %s  %s\n", name,
		       kwp_remote_setup_error(r) ? kwp_remote_setup_error(r) : why);
	else if (op->status == -KW_EREMOTE)
		printf("FAIL  %s  answered \"%s\"\n", name,
		       kw_proto_error_string(op->remote_error));
	else if (op->status == 0)
		printf("FAIL  %s  pong does not echo the ping\n", name);
	else
		printf("FAIL  %s  %s\n", name, why);
	return 0;
}

int kw_cli_ping(const struct subcommand *sc, int argc, char **argv)
{
	char *conf = NULL, *name = NULL;
	struct kw_option opts[] = {
	    {.name = "openssl-conf",
	     .type = KW_OPT_STRING,
	     .dest = &conf,
	     .arg = "FILE",
	     .help = "OpenSSL configuration to read (default: $OPENSSL_CONF, else OpenSSL's)"},
	    {.name = "provider-name",
	     .type = KW_OPT_STRING,
	     .dest = &name,
	     .arg = "NAME",
	     .help = "the provider's name in its [providers] section (default: keyway)"},
	    {.name = NULL},
	};
	struct kwp_settings s;
	struct kwp_remote *r = NULL;
	struct kwp_op **ops = NULL;
	char err[512];
	int rc = 1, npos = 0, ok = 0;

	int prc =
	    kw_config_parse(opts, argc, argv,
	                    "usage: keyway ping [--openssl-conf FILE]\n\n"
	                    "Ask every keyserver of the keyway provider's settings for a pong.",
	                    NULL, &npos, err, sizeof(err));
	if (prc == 1)
		return 0;
	if (prc < 0) {
		fprintf(stderr, "keyway ping: %s\n", err);
		return EXIT_USAGE;
	}
	if (kwp_settings_from_cnf(&s, conf, name ? name : "keyway") < 0) {
		fprintf(stderr, "keyway ping: out of memory\n");
		kw_config_free(opts);
		return 1;
	}
	if (s.error != NULL) {
		fprintf(stderr, "keyway ping: %s\n", s.error);
		goto out;
	}
	if (s.nservers == 0) {
		fprintf(stderr, "keyway ping: no keyserver configured (servers in the provider's "
		                "openssl.cnf section, or KEYWAY_SERVERS)\n");
		goto out;
	}
	if (kwp_remote_new(&s, NULL, &r) < 0 || (ops = calloc(s.nservers, sizeof(*ops))) == NULL) {
		fprintf(stderr, "keyway ping: out of memory\n");
		goto out;
	}
	uint64_t deadline = kwp_deadline_after_ms(s.timeout_ms);
	for (size_t i = 0; i < s.nservers; i++) {
		ops[i] =
		    kwp_op_new(KW_OP_PING, NULL, (const uint8_t *)payload, sizeof(payload) - 1);
		if (ops[i] == NULL)
			continue;
		ops[i]->server = (int)i;
		ops[i]->deadline_ns = deadline;
		if (kwp_remote_submit(r, ops[i]) < 0) {
			kwp_op_put(ops[i]);
			ops[i] = NULL;
		}
	}
	for (size_t i = 0; i < s.nservers; i++) {
		if (ops[i] == NULL) {
			printf("FAIL  %s  cannot start the I/O thread\n", s.server_texts[i]);
			continue;
		}
		int wrc = kwp_op_wait(ops[i], deadline);
		ok += report(&s, r, i, ops[i], wrc);
	}
	fflush(stdout);
	rc = (size_t)ok == s.nservers ? 0 : 1;
out:
	kwp_remote_free(r);
	for (size_t i = 0; ops != NULL && i < s.nservers; i++)
		kwp_op_put(ops[i]);
	free(ops);
	kwp_settings_cleanup(&s);
	kw_config_free(opts);
	return rc;
}
