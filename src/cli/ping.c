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
#include "keyway/backend_keyless.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "settings.h"

#define EXIT_USAGE 2

static const char payload[] = "keyway ping";

struct ping {
	struct kw_op op;
	uint64_t done_ns;
};

static void on_done(struct kw_op *op, void *arg)
{
	((struct ping *)op)->done_ns = kw_now_ns();
}

/* report prints one line for keyserver i and returns 1 if it answered well. */
static int report(const struct kwp_settings *s, size_t i, struct ping *p, const char *setup)
{
	const char *name = s->server_texts[i];
	struct kw_op *op = &p->op;

	if (setup != NULL) {
		printf("FAIL  %s  %s\n", name, setup);
		return 0;
	}
	if (op->status == 0 && op->out_len == sizeof(payload) - 1 &&
	    memcmp(op->out, payload, op->out_len) == 0) {
		printf("ok    %s  %.1f ms\n", name, (double)(p->done_ns - op->submit_ns) / 1e6);
		return 1;
	}
	if (!kw_op_is_done(op) || op->status == -KW_ETIMEOUT)
		printf("FAIL  %s  no answer within timeout_ms=%u\n", name, s->timeout_ms);
	else if (op->status == -KW_EREMOTE)
		printf("FAIL  %s  answered \"%s\"\n", name,
		       kw_proto_error_string(op->remote_error));
	else if (op->status == -KW_ETLS)
		printf("FAIL  %s  TLS failure (is its certificate signed by the configured ca, for "
		       "the name in servers or server_name?)\n",
		       name);
	else if (op->status == 0)
		printf("FAIL  %s  pong does not echo the ping\n", name);
	else
		printf("FAIL  %s  %s\n", name, kw_strerror(op->status));
	return 0;
}

/*
 * ping_all asks every keyserver once, on a loop of our own (the backend the
 * provider's I/O thread uses), and waits for every answer or timeout_ms.
 */
static int ping_all(const struct kwp_settings *s)
{
	struct kw_loop *loop = NULL;
	struct kw_backend *b = NULL;
	struct ping *pings = calloc(s->nservers, sizeof(*pings));
	SSL_CTX *ctx = NULL;
	char err[512], *setup = NULL;
	int ok = 0;

	if (pings == NULL || kw_loop_new(&loop) < 0) {
		fprintf(stderr, "keyway ping: out of memory\n");
		free(pings);
		return 0;
	}
	if (kwp_settings_need_tls(s) &&
	    (ctx = kwp_settings_ssl_ctx(s, NULL, err, sizeof(err))) == NULL)
		setup = err;
	if (setup == NULL) {
		struct kw_keyless_config cfg = {
		    .addrs = s->addrs,
		    .names = (const char *const *)s->server_texts,
		    .nservers = s->nservers,
		    .ssl_ctx = ctx,
		    .server_name = s->server_name,
		    .connections = 1,
		    .timeout_ms = s->timeout_ms,
		};
		int rc = kw_backend_keyless_new(loop, &cfg, &b);
		if (rc < 0) {
			snprintf(err, sizeof(err), "cannot set up keyserver connections: %s",
			         kw_strerror(rc));
			setup = err;
		}
	}
	uint64_t deadline = kw_now_ns() + (uint64_t)s->timeout_ms * 1000000u;
	for (size_t i = 0; setup == NULL && i < s->nservers; i++) {
		struct kw_op *op = &pings[i].op;
		kw_op_init(op, KW_OPK_OTHER, KW_OP_PING);
		op->in = (const uint8_t *)payload;
		op->in_len = sizeof(payload) - 1;
		op->deadline_ns = deadline;
		op->done = on_done;
		if (kw_backend_keyless_submit_to(b, op, i) < 0)
			kw_op_init(op, KW_OPK_OTHER, KW_OP_PING); /* reported as no answer */
	}
	/* The backend completes every op by its deadline; the margin is only a guard. */
	for (size_t done = 0; setup == NULL && done < s->nservers;) {
		if (kw_now_ns() > deadline + 1000000000ull)
			break;
		kw_loop_run_once(loop, 50);
		done = 0;
		for (size_t i = 0; i < s->nservers; i++)
			done += kw_op_is_done(&pings[i].op);
	}
	for (size_t i = 0; i < s->nservers; i++)
		ok += report(s, i, &pings[i], setup);
	fflush(stdout);
	kw_backend_free(b); /* completes anything left; the ops are ours (no release) */
	kw_loop_free(loop);
	SSL_CTX_free(ctx);
	free(pings);
	return (size_t)ok == s->nservers;
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
	char err[512];
	int rc = 1, npos = 0;

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
	rc = ping_all(&s) ? 0 : 1;
out:
	kwp_settings_cleanup(&s);
	kw_config_free(opts);
	return rc;
}
