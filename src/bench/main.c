/*
 * keyway-bench - keyless load generator.
 *
 * One event loop drives --connections pipelined keyless clients, each
 * keeping --depth requests in flight: every completion is checked and
 * immediately replaced from its callback. Nothing is allocated per
 * operation; signatures are verified on a sample (--verify-every).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/client.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/tls.h"
#include "stats.h"
#include "workload.h"

#define RETRY_MS 100        /* pause before resubmitting after a connection failure */
#define BACKOFF_MIN_MS 10   /* first pause of a connection after an error answer */
#define BACKOFF_MAX_MS 1000 /* the pause doubles per failed round up to this */
#define DRAIN_MS 5000       /* how long in-flight requests may take after the end */
#define MAX_ERROR_LINES 10  /* errors described on stderr, then only counted */

enum phase { PH_WARMUP, PH_MEASURE, PH_DRAIN };

struct bench;

/* One in-flight request position; reused for every request it carries. */
struct slot {
	struct conn *conn;
	unsigned payload; /* index into the workload's requests */
	bool busy;
};

struct conn {
	struct bench *b;
	struct kw_client *client;
	struct slot *slots;    /* depth of them */
	struct kw_timer retry; /* restarts idle slots after an error (back-off) */
	unsigned backoff_ms;   /* the pause after the next error; 0: no error since an answer */
};

struct bench {
	struct kw_loop *loop;
	struct kwb_workload wl;
	unsigned nconns, depth, verify_every;
	struct conn *conns;
	struct slot *slots;
	enum phase phase;
	unsigned inflight;
	unsigned next_payload;
	uint64_t duration_ns;
	uint64_t t_start, t_measure, t_end; /* t_measure: 0 until measuring starts */
	uint64_t ops;                       /* checked answers completed while measuring */
	uint64_t answers;                   /* all good answers (for progress and sampling) */
	uint64_t verified;                  /* signatures verified with the public key */
	uint64_t errors;
	uint64_t err_timeout, err_conn, err_proto, err_check, err_verify, err_submit;
	uint64_t err_remote[256];
	unsigned error_lines;
	bool backoff_said; /* the back-off has been announced on stderr */
	uint64_t last_answers, last_tick;
	struct kwb_hist hist;
	struct kw_timer phase_timer, tick_timer, drain_timer;
	bool json;
};

static struct kw_loop *signal_loop;
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = 1;
	if (signal_loop != NULL)
		kw_loop_wake(signal_loop);
}

/* describe_error prints the first few errors, so a failing run says why. */
static void describe_error(struct bench *b, const char *what, const char *detail)
{
	if (b->error_lines >= MAX_ERROR_LINES)
		return;
	b->error_lines++;
	fprintf(stderr, "keyway-bench: error: %s%s%s\n", what, detail,
	        b->error_lines == MAX_ERROR_LINES ? " (further errors are only counted)" : "");
}

static void count_error(struct bench *b, const struct kw_client_result *res, int check_rc)
{
	char why[96];

	b->errors++;
	if (check_rc == -KW_ECRYPTO) {
		b->err_verify++;
		describe_error(b, "a signature does not verify with the public key", "");
		return;
	}
	if (check_rc < 0) {
		b->err_check++;
		describe_error(b, "an answer does not match its request", "");
		return;
	}
	switch (res->status) {
	case -KW_EREMOTE:
		b->err_remote[res->remote_error]++;
		snprintf(why, sizeof(why), " 0x%02x (%s)", res->remote_error,
		         kw_proto_error_string(res->remote_error));
		describe_error(b, "keyserver answered error", why);
		break;
	case -KW_ETIMEOUT:
		b->err_timeout++;
		describe_error(b, "request timed out", "");
		break;
	case -KW_EPROTO:
		b->err_proto++;
		describe_error(b, "malformed or unexpected answer", "");
		break;
	default:
		b->err_conn++;
		snprintf(why, sizeof(why), ": %s", kw_strerror(res->status));
		describe_error(b, "connection failed", why);
		break;
	}
}

static void on_done(void *arg, const struct kw_client_result *res);

/*
 * back_off leaves the slots of c that failed idle until c's retry timer
 * restarts them all. A keyserver answering every request with an error (a key
 * it does not hold) answers in microseconds: resubmitting at once measured
 * nothing but errors, hundreds of thousands a second. The first pause is
 * first_ms; each round that fails again doubles it, up to BACKOFF_MAX_MS; one
 * good answer resets it. Slots failing while the timer runs join that round.
 */
static void back_off(struct conn *c, unsigned first_ms)
{
	struct bench *b = c->b;

	if (kw_timer_active(&c->retry))
		return;
	if (c->backoff_ms < first_ms)
		c->backoff_ms = first_ms;
	if (!b->backoff_said && !b->json) {
		b->backoff_said = true;
		fprintf(stderr,
		        "keyway-bench: backing off after errors: a failing connection waits %u ms, "
		        "doubling up to %u ms, before sending again\n",
		        c->backoff_ms, BACKOFF_MAX_MS);
	}
	kw_timer_start_ms(b->loop, &c->retry, c->backoff_ms);
	c->backoff_ms = c->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : c->backoff_ms * 2;
}

static void slot_start(struct slot *s)
{
	struct bench *b = s->conn->b;

	s->payload = b->next_payload++ % KWB_NPAYLOADS;
	int rc = kw_client_submit(s->conn->client, &b->wl.msgs[s->payload], on_done, s, NULL);
	if (rc < 0) {
		b->errors++;
		b->err_submit++;
		describe_error(b, "cannot submit: ", kw_strerror(rc));
		back_off(s->conn, RETRY_MS);
		return;
	}
	s->busy = true;
	b->inflight++;
}

static void on_retry(struct kw_loop *loop, void *arg)
{
	struct conn *c = arg;

	if (c->b->phase == PH_DRAIN)
		return;
	for (unsigned i = 0; i < c->b->depth; i++)
		if (!c->slots[i].busy)
			slot_start(&c->slots[i]);
}

static bool connection_error(int status)
{
	return status < 0 && status != -KW_EREMOTE && status != -KW_EPROTO &&
	       status != -KW_ETIMEOUT;
}

static void on_done(void *arg, const struct kw_client_result *res)
{
	struct slot *s = arg;
	struct conn *c = s->conn;
	struct bench *b = c->b;
	int check_rc = 0;

	s->busy = false;
	b->inflight--;
	if (b->phase == PH_DRAIN && res->status == -KW_ECANCELED)
		return; /* torn down after the drain bound: not the server's fault */

	if (res->status == 0) {
		bool sample = b->verify_every != 0 && b->answers % b->verify_every == 0;
		check_rc = kwb_check(&b->wl, s->payload, res->payload, res->payload_len, sample);
		if (check_rc == 0 && sample && b->phase == PH_MEASURE && b->wl.op != KWB_OP_PING &&
		    b->wl.op != KWB_OP_RSA_DECRYPT)
			b->verified++;
	}
	if (res->status == 0 && check_rc == 0) {
		c->backoff_ms = 0;
		b->answers++;
		if (b->phase == PH_MEASURE) {
			b->ops++;
			kwb_hist_record(&b->hist, res->latency_ns);
		}
	} else {
		count_error(b, res, check_rc);
	}

	if (b->phase == PH_DRAIN) {
		if (b->inflight == 0)
			kw_loop_stop(b->loop);
		return;
	}
	if (res->status != 0 || check_rc != 0) {
		/* Don't spin on a dead server or on error answers: back off. */
		back_off(c, connection_error(res->status) ? RETRY_MS : BACKOFF_MIN_MS);
		return;
	}
	slot_start(s);
}

static void start_drain(struct bench *b)
{
	b->phase = PH_DRAIN;
	b->t_end = kw_now_ns();
	kw_timer_stop(b->loop, &b->phase_timer);
	kw_timer_stop(b->loop, &b->tick_timer);
	kw_timer_start_ms(b->loop, &b->drain_timer, DRAIN_MS);
	if (b->inflight == 0)
		kw_loop_stop(b->loop);
}

static void on_drain_timeout(struct kw_loop *loop, void *arg)
{
	struct bench *b = arg;

	fprintf(stderr,
	        "keyway-bench: %u requests still in flight after %u ms; giving up on them\n",
	        b->inflight, DRAIN_MS);
	kw_loop_stop(loop);
}

static void on_phase(struct kw_loop *loop, void *arg)
{
	struct bench *b = arg;

	if (b->phase == PH_WARMUP) {
		b->phase = PH_MEASURE;
		b->t_measure = kw_now_ns();
		kw_timer_start_at(loop, &b->phase_timer, b->t_measure + b->duration_ns);
	} else {
		start_drain(b);
	}
}

static void on_tick(struct kw_loop *loop, void *arg)
{
	struct bench *b = arg;
	uint64_t now = kw_now_ns();

	if (interrupted && b->phase != PH_DRAIN) {
		start_drain(b);
		return;
	}
	if (!b->json) {
		double dt = (double)(now - b->last_tick) / 1e9;
		double rate = dt > 0 ? (double)(b->answers - b->last_answers) / dt : 0;
		fprintf(stderr, "keyway-bench: %6.1fs %s %10.0f ops/s %8llu errors\n",
		        (double)(now - b->t_start) / 1e9, b->phase == PH_WARMUP ? "warmup " : "",
		        rate, (unsigned long long)b->errors);
	}
	b->last_answers = b->answers;
	b->last_tick = now;
	kw_timer_start_ms(loop, &b->tick_timer, 1000);
}

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '"' || ch == '\\')
			printf("\\%c", ch);
		else if (ch < 0x20)
			printf("\\u%04x", ch);
		else
			putchar(ch);
	}
	putchar('"');
}

static void report(const struct bench *b, const char *server)
{
	double secs = b->t_measure != 0 && b->t_end > b->t_measure
	                  ? (double)(b->t_end - b->t_measure) / 1e9
	                  : 0;
	double rate = secs > 0 ? (double)b->ops / secs : 0;
	double p50 = kwb_hist_percentile(&b->hist, 50) / 1e3;
	double p90 = kwb_hist_percentile(&b->hist, 90) / 1e3;
	double p99 = kwb_hist_percentile(&b->hist, 99) / 1e3;
	double p999 = kwb_hist_percentile(&b->hist, 99.9) / 1e3;
	double mean = kwb_hist_mean(&b->hist) / 1e3;
	double max = (double)b->hist.max_ns / 1e3;
	const char *op = kwb_op_names[b->wl.op];

	if (b->json) {
		printf("{\"op\":\"%s\",\"server\":", op);
		json_string(server);
		printf(",\"connections\":%u,\"depth\":%u,"
		       "\"ops\":%llu,\"errors\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.1f,"
		       "\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,"
		       "\"mean_us\":%.1f,\"max_us\":%.1f,\"verified\":%llu}\n",
		       b->nconns, b->depth, (unsigned long long)b->ops,
		       (unsigned long long)b->errors, secs, rate, p50, p90, p99, p999, mean, max,
		       (unsigned long long)b->verified);
	} else {
		printf("%-18s %5s %5s %10s %7s %7s %10s %9s %9s %9s %9s\n", "op", "conns", "depth",
		       "ops", "errors", "seconds", "ops/s", "p50_us", "p90_us", "p99_us",
		       "p99.9_us");
		printf("%-18s %5u %5u %10llu %7llu %7.2f %10.1f %9.1f %9.1f %9.1f %9.1f\n", op,
		       b->nconns, b->depth, (unsigned long long)b->ops,
		       (unsigned long long)b->errors, secs, rate, p50, p90, p99, p999);
	}
	if (b->errors == 0)
		return;
	fprintf(stderr,
	        "keyway-bench: errors: %llu timeout, %llu connection, %llu protocol, "
	        "%llu wrong answer, %llu bad signature, %llu submit",
	        (unsigned long long)b->err_timeout, (unsigned long long)b->err_conn,
	        (unsigned long long)b->err_proto, (unsigned long long)b->err_check,
	        (unsigned long long)b->err_verify, (unsigned long long)b->err_submit);
	for (unsigned i = 0; i < 256; i++)
		if (b->err_remote[i])
			fprintf(stderr, ", %llu keyserver error 0x%02x (%s)",
			        (unsigned long long)b->err_remote[i], i,
			        kw_proto_error_string((uint8_t)i));
	fprintf(stderr, "\n");
}

static const char usage[] =
    "usage: keyway-bench --server ADDR:PORT|unix:PATH [--client-cert F --client-key F --ca F]\n"
    "                    [--server-name NAME] --op OP --key PEM\n"
    "                    [--connections N] [--depth N] [--duration S] [--warmup S]\n"
    "                    [--verify-every N] [--json] [--config FILE]\n"
    "Keeps --depth keyless requests in flight on each of --connections connections\n"
    "for --duration seconds, checks every answer, and prints throughput and latency.\n"
    "Exit status: 0 if there were operations and no errors, 1 otherwise, 2 on bad usage.";

int main(int argc, char **argv)
{
	static struct bench bench;
	struct bench *b = &bench;
	char *server = NULL, *tls_cert = NULL, *tls_key = NULL, *ca = NULL, *server_name = NULL;
	char *key_path = NULL, *log_level = NULL;
	int op = -1;
	unsigned conns = 1, depth = 64, duration = 10, warmup = 0, verify_every = 64;
	unsigned timeout_ms = 10000;
	bool json = false;
	struct kw_option opts[] = {
	    KW_OPT_STR("server", &server, "ADDR:PORT|unix:PATH", "keyserver address",
	               .required = true),
	    /* The names keyway-proxy, keyway ping and the provider use; tls-* were bench's own. */
	    KW_OPT_STR("client-cert", &tls_cert, "FILE", "client certificate chain (PEM)",
	               .alias = "tls-cert"),
	    KW_OPT_STR("client-key", &tls_key, "FILE", "client private key (PEM)",
	               .alias = "tls-key"),
	    KW_OPT_STR("ca", &ca, "FILE", "CA that signed the keyserver's certificate"),
	    KW_OPT_STR(
	        "server-name", &server_name, "NAME",
	        "name to verify in the keyserver's certificate (default: the --server host)"),
	    KW_OPT_CHOICE("op", &op, "OP",
	                  "ping|rsa-pkcs1-sha256|rsa-pss-sha256|ecdsa-sha256|ed25519|rsa-decrypt",
	                  kwb_op_names, .required = true),
	    KW_OPT_STR("key", &key_path, "PEM",
	               "certificate, public or private key of the keyserver's key (gives the SKI)"),
	    KW_OPT_NUM("connections", &conns, "N", "connections (default 1)", 1, 10000),
	    KW_OPT_NUM("depth", &depth, "N", "requests in flight per connection (default 64)", 1,
	               1024),
	    KW_OPT_NUM("duration", &duration, "SECONDS", "measured time (default 10)", 1, 86400),
	    KW_OPT_NUM("warmup", &warmup, "SECONDS",
	               "unmeasured load before --duration starts (default 0)", 0, 3600),
	    KW_OPT_NUM("verify-every", &verify_every, "N",
	               "verify every Nth signature with the public key; 0: never (default 64)", 0,
	               0),
	    KW_OPT_NUM("timeout-ms", &timeout_ms, "MS", "per-request deadline (default 10000)", 1,
	               3600000),
	    KW_OPT_FLAG("json", &json, "print one JSON object instead of a table"),
	    KW_OPT_STR("log-level", &log_level, "LEVEL", "debug|info|warn|error (default warn)"),
	    KW_OPT_END,
	};
	char err[1024];
	int status = 2;
	SSL_CTX *ctx = NULL;
	EVP_PKEY *key = NULL;
	struct kw_addr addr;

	int rc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0) {
		fprintf(stderr, "keyway-bench: %s\n", err);
		return 2;
	}
	kw_log_init("keyway-bench", KW_LOG_WARN);
	if (log_level != NULL) {
		int lvl = kw_log_parse_level(log_level);
		if (lvl < 0) {
			kw_config_errorf(opts, "log-level", err, sizeof(err),
			                 "'%s' is not valid; expected debug|info|warn|error",
			                 log_level);
			goto usage;
		}
		kw_log_set_level((enum kw_log_level)lvl);
	}
	char addr_err[512];
	if (kw_addr_parse(&addr, server, addr_err, sizeof(addr_err)) < 0) {
		kw_config_errorf(opts, "server", err, sizeof(err), "%s", addr_err);
		goto usage;
	}
	if (key_path != NULL && (rc = kw_load_public_key(key_path, &key)) < 0) {
		kw_config_errorf(opts, "key", err, sizeof(err), "'%s': %s", key_path,
		                 rc == -KW_ECRYPTO
		                     ? "not a PEM or DER certificate, public or private key"
		                     : kw_strerror(rc));
		goto usage;
	}
	rc = kwb_workload_init(&b->wl, (enum kwb_op)op, key, err, sizeof(err));
	key = NULL; /* owned by the workload now */
	if (rc < 0) {
		fprintf(stderr, "keyway-bench: %s\n", err);
		goto out;
	}
	if (!addr.is_unix) {
		if ((tls_cert == NULL) != (tls_key == NULL)) {
			fprintf(stderr,
			        "keyway-bench: --client-cert and --client-key go together\n");
			goto out;
		}
		ctx = kw_tls_client_ctx(tls_cert, tls_key, ca, err, sizeof(err));
		if (ctx == NULL) {
			fprintf(stderr, "keyway-bench: %s%s\n", err,
			        ca == NULL ? " (--ca FILE; TCP keyservers are always mutual TLS)"
			                   : "");
			goto out;
		}
	}

	signal(SIGPIPE, SIG_IGN);
	status = 1;
	if ((rc = kw_loop_new(&b->loop)) < 0) {
		fprintf(stderr, "keyway-bench: cannot create event loop: %s\n", kw_strerror(rc));
		goto out;
	}
	signal_loop = b->loop;
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);

	b->nconns = conns;
	b->depth = depth;
	b->verify_every = verify_every;
	b->json = json;
	kwb_hist_init(&b->hist);
	b->conns = calloc(conns, sizeof(*b->conns));
	b->slots = calloc((size_t)conns * depth, sizeof(*b->slots));
	if (b->conns == NULL || b->slots == NULL) {
		fprintf(stderr, "keyway-bench: out of memory\n");
		goto out;
	}
	struct kw_client_config cfg = {
	    .addr = addr,
	    .ssl_ctx = ctx,
	    .server_name = server_name,
	    .timeout_ms = timeout_ms,
	    .max_inflight = depth,
	};
	for (unsigned i = 0; i < conns; i++) {
		struct conn *c = &b->conns[i];
		c->b = b;
		c->slots = &b->slots[(size_t)i * depth];
		kw_timer_init(&c->retry, on_retry, c);
		if ((rc = kw_client_new(b->loop, &cfg, &c->client)) < 0) {
			fprintf(stderr, "keyway-bench: cannot create client: %s\n",
			        kw_strerror(rc));
			goto out;
		}
		for (unsigned j = 0; j < depth; j++)
			c->slots[j].conn = c;
	}

	kw_timer_init(&b->phase_timer, on_phase, b);
	kw_timer_init(&b->tick_timer, on_tick, b);
	kw_timer_init(&b->drain_timer, on_drain_timeout, b);
	b->t_start = b->last_tick = kw_now_ns();
	b->duration_ns = (uint64_t)duration * 1000000000u;
	if (warmup > 0) {
		b->phase = PH_WARMUP;
		kw_timer_start_ms(b->loop, &b->phase_timer, (uint64_t)warmup * 1000u);
	} else {
		b->phase = PH_MEASURE;
		b->t_measure = b->t_start;
		kw_timer_start_ms(b->loop, &b->phase_timer, (uint64_t)duration * 1000u);
	}
	kw_timer_start_ms(b->loop, &b->tick_timer, 1000);
	for (size_t i = 0; i < (size_t)conns * depth; i++)
		slot_start(&b->slots[i]);

	if ((rc = kw_loop_run(b->loop)) < 0) {
		fprintf(stderr, "keyway-bench: event loop failed: %s\n", kw_strerror(rc));
		goto out;
	}
	if (b->phase != PH_DRAIN)
		start_drain(b); /* stopped some other way: still report */
	report(b, server);
	status = b->errors == 0 && b->ops > 0 ? 0 : 1;
	goto out;

usage:
	fprintf(stderr, "keyway-bench: %s\n", err);
out:
	if (b->conns != NULL) {
		b->phase = PH_DRAIN;
		for (unsigned i = 0; i < conns; i++) {
			kw_client_free(b->conns[i].client);
			if (b->loop != NULL)
				kw_timer_stop(b->loop, &b->conns[i].retry);
		}
	}
	if (b->loop != NULL) {
		kw_timer_stop(b->loop, &b->phase_timer);
		kw_timer_stop(b->loop, &b->tick_timer);
		kw_timer_stop(b->loop, &b->drain_timer);
		signal_loop = NULL;
		kw_loop_free(b->loop);
	}
	free(b->conns);
	free(b->slots);
	kwb_workload_cleanup(&b->wl);
	EVP_PKEY_free(key);
	SSL_CTX_free(ctx);
	kw_config_free(opts);
	return status;
}
