/*
 * ping.c - `keyway ping`: read the keyway provider's settings exactly as the
 * provider does (its openssl.cnf section, then the KEYWAY_* environment),
 * connect to every keyserver the way the provider would, and ask each for a
 * pong within timeout_ms. One line per keyserver; exit 0 only if all answer.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "keyway/backend_keyless.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/loop.h"
#include "keyway/provider_settings.h"

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
static int report(const struct kw_keyless_config *cfg, size_t i, struct ping *p, const char *setup)
{
	const char *name = cfg->names[i];
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
		printf("FAIL  %s  no answer within timeout_ms=%u\n", name, cfg->timeout_ms);
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
 * ping_all asks every keyserver of cfg once, on a loop of our own (the
 * backend the provider's I/O thread uses), and waits for every answer or
 * timeout_ms. setup, when set, is why none can be asked.
 */
static int ping_all(const struct kw_keyless_config *cfg, const char *setup)
{
	struct kw_loop *loop = NULL;
	struct kw_backend *b = NULL;
	struct ping *pings = calloc(cfg->nservers, sizeof(*pings));
	char err[512];
	int ok = 0;

	if (pings == NULL || kw_loop_new(&loop) < 0) {
		fprintf(stderr, "keyway ping: out of memory\n");
		free(pings);
		return 0;
	}
	if (setup == NULL) {
		int rc = kw_backend_keyless_new(loop, cfg, &b);
		if (rc < 0) {
			snprintf(err, sizeof(err), "cannot set up keyserver connections: %s",
			         kw_strerror(rc));
			setup = err;
		}
	}
	uint64_t deadline = kw_now_ns() + (uint64_t)cfg->timeout_ms * 1000000u;
	for (size_t i = 0; setup == NULL && i < cfg->nservers; i++) {
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
	for (size_t done = 0; setup == NULL && done < cfg->nservers;) {
		if (kw_now_ns() > deadline + 1000000000ull)
			break;
		kw_loop_run_once(loop, 50);
		done = 0;
		for (size_t i = 0; i < cfg->nservers; i++)
			done += kw_op_is_done(&pings[i].op);
	}
	for (size_t i = 0; i < cfg->nservers; i++)
		ok += report(cfg, i, &pings[i], setup);
	fflush(stdout);
	kw_backend_free(b); /* completes anything left; the ops are ours (no release) */
	kw_loop_free(loop);
	free(pings);
	return (size_t)ok == cfg->nservers;
}

static const char usage[] =
    "usage: keyway ping [--openssl-conf FILE] [--client-cert F --client-key F] [--ca F]\n\n"
    "Ask every keyserver of the keyway provider's settings for a pong.";

/*
 * override puts a flag's value where the provider reads it: its KEYWAY_*
 * variable, which wins over openssl.cnf, so ping connects exactly as the
 * provider would with that setting.
 */
static int override(const char *var, const char *value)
{
	if (value == NULL || setenv(var, value, 1) == 0)
		return 0;
	fprintf(stderr, "keyway ping: cannot set %s\n", var);
	return -1;
}

int kw_cli_ping(const struct subcommand *sc, int argc, char **argv)
{
	char *conf = NULL, *name = NULL, *cert = NULL, *key = NULL, *ca = NULL;
	struct kw_option opts[] = {
	    KW_OPT_STR("openssl-conf", &conf, "FILE",
	               "OpenSSL configuration to read (default: $OPENSSL_CONF, else OpenSSL's)"),
	    KW_OPT_STR("provider-name", &name, "NAME",
	               "the provider's name in its [providers] section (default: keyway)"),
	    KW_OPT_STR("client-cert", &cert, "FILE",
	               "client certificate for TCP keyservers (overrides client_cert)"),
	    KW_OPT_STR("client-key", &key, "FILE", "its private key (overrides client_key)"),
	    KW_OPT_STR("ca", &ca, "FILE", "CA of the keyservers' certificates (overrides ca)"),
	    KW_OPT_END,
	};
	struct kw_provider_settings *s = NULL;
	struct kw_keyless_config cfg;
	SSL_CTX *ctx = NULL;
	char err[512];
	int rc;

	if (!kw_cli_options(opts, argc, argv, "ping", usage, &rc))
		return rc;
	rc = 1;
	if (override("KEYWAY_CLIENT_CERT", cert) < 0 || override("KEYWAY_CLIENT_KEY", key) < 0 ||
	    override("KEYWAY_CA", ca) < 0)
		goto out;
	if (kw_provider_settings_read(conf, name ? name : "keyway", &s) < 0) {
		fprintf(stderr, "keyway ping: out of memory\n");
		goto out;
	}
	bool fatal = false;
	const char *problem = kw_provider_settings_cnf_problem(s, &fatal);
	if (problem != NULL && fatal) {
		fprintf(stderr, "keyway ping: %s\n", problem);
		goto out;
	}
	if (kw_provider_settings_error(s) != NULL) {
		fprintf(stderr, "keyway ping: %s\n", kw_provider_settings_error(s));
		goto out;
	}
	int setup = kw_provider_settings_keyless(s, &cfg, &ctx, err, sizeof(err));
	if (cfg.nservers == 0) {
		/* The configuration's own fault explains the missing servers better. */
		if (problem != NULL)
			fprintf(stderr, "keyway ping: %s\n", problem);
		else
			fprintf(stderr, "keyway ping: no keyserver configured (servers in the "
			                "provider's openssl.cnf section, or KEYWAY_SERVERS)\n");
		goto out;
	}
	rc = ping_all(&cfg, setup < 0 ? err : NULL) ? 0 : 1;
out:
	SSL_CTX_free(ctx);
	kw_provider_settings_free(s);
	kw_config_free(opts);
	return rc;
}
