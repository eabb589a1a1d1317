/*
 * keyway-proxy - the QTLS front end: a TLS terminator whose handshakes can
 * offload their private-key work asynchronously.
 *
 * The main thread parses options, opens the listeners (one SO_REUSEPORT
 * socket per worker), starts the workers and then only handles signals
 * (SIGTERM/SIGINT: drain and exit) and serves --metrics in its own loop.
 * Exit status: 0 after a clean stop, 2 for a start-up error (one line
 * naming the option or file and the fix), 1 for a failure later on.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "metrics.h"
#include "proxy.h"
#include "keys.h"
#include "tlsctx.h"

static const char usage[] =
    "usage: keyway-proxy --listen ADDR:PORT --cert FILE --key FILE|keyway:URI|REFERENCE.pem "
    "--respond|--upstream HOST:PORT\n"
    "                    [--workers N] [--backend inline|threads|keyless] [--async on|off]\n"
    "                    [--notify callback|fd] [--poll heuristic|timer|busy] "
    "[--poll-interval-us N]\n"
    "                    [--keepalive-timeout S] [--resumption on|off] [--metrics ADDR:PORT]\n"
    "                    [--config FILE] [options]\n"
    "A TLS terminator (QTLS front end) answering every HTTP/1.1 request with a small\n"
    "fixed response (--respond), or relaying each connection's plaintext to a TCP\n"
    "server (--upstream). Handshakes offload their private-key operation to the\n"
    "backend; SIGTERM drains (within --drain-timeout) and exits.";

static const char *const backend_names[] = {"inline", "threads", "keyless", NULL};
static const char *const on_off[] = {"on", "off", NULL};
static const char *const notify_names[] = {"callback", "fd", NULL};
static const char *const poll_names[] = {"heuristic", "timer", "busy", NULL};

/*
 * Pairs of --cert and --key, and the backend they fit: keys held by
 * keyservers want keyless (the default when any is given), local ones
 * inline or threads. Mixed sets are allowed with any backend: with keyless
 * the local keys sign on the loop thread; otherwise keyserver-held keys go
 * through the provider's own I/O thread.
 */
static int check_keys(struct kpx_options *o, bool backend_seen, char *err, size_t errlen)
{
	size_t ncerts = 0, nkeys = 0;
	while (o->certs != NULL && o->certs[ncerts] != NULL)
		ncerts++;
	while (o->keys != NULL && o->keys[nkeys] != NULL)
		nkeys++;
	if (ncerts != nkeys) {
		snprintf(err, errlen,
		         "%zu --cert but %zu --key; fix: give them in pairs, each --key right "
		         "after its --cert",
		         ncerts, nkeys);
		return -KW_ECONFIG;
	}
	bool remote = false, local = false; /* each file is looked at once */
	for (size_t i = 0; i < nkeys; i++) {
		bool r = kpx_key_kind(o->keys[i]) == KPX_KEY_KEYWAY;
		remote |= r;
		local |= !r;
	}
	o->keys_remote = remote;
	if (!backend_seen) {
		o->backend = remote ? KPX_BACKEND_KEYLESS : KPX_BACKEND_INLINE;
	} else if (o->backend == KPX_BACKEND_KEYLESS && !remote) {
		snprintf(err, errlen,
		         "--backend keyless, but every --key is a local private key; fix: use "
		         "--backend inline or threads, or give a keyway: URI or KEYWAY KEY "
		         "reference");
		return -KW_ECONFIG;
	} else if (o->backend != KPX_BACKEND_KEYLESS && !local) {
		snprintf(err, errlen,
		         "--backend %s does not fit keys held by keyservers; fix: use --backend "
		         "keyless, or give a local PEM private key",
		         backend_names[o->backend]);
		return -KW_ECONFIG;
	}
	return 0;
}

static int check_options(struct kpx_options *o, bool backend_seen, char *err, size_t errlen)
{
	if (kpx_term_check(o, err, errlen) < 0)
		return -KW_ECONFIG;
	if (check_keys(o, backend_seen, err, errlen) < 0)
		return -KW_ECONFIG;
	if (o->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->workers = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
	}
	return 0;
}

struct main_ctx {
	struct kpx_worker *workers;
	unsigned nworkers;
	const struct kpx_options *o;
	struct kw_io sig_io;
};

/*
 * SIGHUP: load every --cert/--key pair again (files re-read, keyway keys
 * re-resolved) and publish the new set for new connections; open ones keep
 * theirs. A set that fails to load changes nothing.
 */
static void reload_certs(const struct kpx_options *o)
{
	char err[1024] = "";
	struct kpx_tls *t = kpx_tls_load(o, err, sizeof(err));
	if (t == NULL) {
		kw_error("SIGHUP: reload failed, keeping the certificates in use: %s", err);
		return;
	}
	size_t n = kpx_tls_count(t);
	kpx_tls_publish(t);
	kw_info("SIGHUP: reloaded %zu certificate%s; new connections use them", n,
	        n == 1 ? "" : "s");
}

static void on_signal(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			struct main_ctx *mc = arg;
			reload_certs(mc->o);
			if (kpx_alog_reopen(mc->o) < 0)
				kw_error("SIGHUP: cannot reopen --access-log %s: %s",
				         mc->o->access_log, strerror(errno));
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			kw_info("%s: draining connections and exiting",
			        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			kw_loop_stop(loop);
		}
	}
}

static int open_listeners(struct kpx_worker *workers, unsigned n, struct kw_addr *addr, int *fds,
                          char *err, size_t errlen)
{
	char text[300];
	for (unsigned i = 0; i < n; i++) {
		fds[i] = kw_listen_tcp(addr, true, 1024);
		if (fds[i] < 0) {
			kw_addr_format(addr, text, sizeof(text));
			snprintf(err, errlen, "cannot listen on %s: %s; fix: choose a free address",
			         text, kw_strerror(fds[i]));
			return fds[i];
		}
		if (i == 0) {
			/* Port 0: every worker's socket must share the port the first one got. */
			int port = kw_bound_port(fds[0]);
			if (port > 0 && addr->ss.ss_family == AF_INET)
				((struct sockaddr_in *)&addr->ss)->sin_port = htons((uint16_t)port);
			else if (port > 0 && addr->ss.ss_family == AF_INET6)
				((struct sockaddr_in6 *)&addr->ss)->sin6_port =
				    htons((uint16_t)port);
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct kpx_options o = {
	    .resumption_off = 1,
	    .poll_threshold = 48,
	    .poll_interval_us = 1000,
	    .crypto_threads = 1,
	    .ring_size = 256,
	    .keepalive_timeout_s = 60,
	    .handshake_timeout_s = 10,
	    .async_jobs = 1024,
	    .body = "ok\n",
	    .log_level = "info",
	    /* TLS termination */
	    .connect_timeout_s = 5,
	    .idle_timeout_s = 300,
	    .drain_timeout_s = 10,
	    .max_handshake_bytes = 65536,
	    .access_fd = -1,
	};
	struct kw_option opts[] = {
	    {.name = "listen",
	     .type = KW_OPT_STRING,
	     .dest = &o.listen,
	     .arg = "ADDR:PORT",
	     .help = "TLS listener (one SO_REUSEPORT socket per worker)",
	     .required = true},
	    {.name = "cert",
	     .type = KW_OPT_LIST,
	     .dest = &o.certs,
	     .arg = "FILE",
	     .help = "certificate chain, PEM; repeat with --key for more (SNI picks; the "
	             "first is the default)",
	     .required = true},
	    {.name = "key",
	     .type = KW_OPT_LIST,
	     .dest = &o.keys,
	     .arg = "FILE|URI",
	     .help = "private key of the --cert before it: local PEM, keyway: URI or KEYWAY "
	             "KEY reference PEM",
	     .required = true},
	    {.name = "alpn",
	     .type = KW_OPT_LIST,
	     .dest = &o.alpn,
	     .arg = "LIST",
	     .help = "ALPN protocols offered, in order of preference (default http/1.1)"},
	    {.name = "respond",
	     .type = KW_OPT_BOOL,
	     .dest = &o.respond,
	     .help = "answer every HTTP/1.1 request with a small fixed response"},
	    {.name = "workers",
	     .type = KW_OPT_UINT,
	     .dest = &o.workers,
	     .arg = "N",
	     .help = "worker threads (default: online cores)",
	     .min = 1,
	     .max = 256},
	    {.name = "backend",
	     .type = KW_OPT_ENUM,
	     .dest = &o.backend,
	     .arg = "inline|threads|keyless",
	     .help = "where private-key operations run (default: inline for a local key)",
	     .choices = backend_names},
	    {.name = "async",
	     .type = KW_OPT_ENUM,
	     .dest = &o.async_off,
	     .arg = "on|off",
	     .help = "pause handshakes on offloaded operations (off: block; default on)",
	     .choices = on_off},
	    {.name = "notify",
	     .type = KW_OPT_ENUM,
	     .dest = &o.notify,
	     .arg = "callback|fd",
	     .help = "how a completed operation resumes its handshake (default callback)",
	     .choices = notify_names},
	    {.name = "poll",
	     .type = KW_OPT_ENUM,
	     .dest = &o.poll,
	     .arg = "heuristic|timer|busy",
	     .help = "when a ring backend is polled (default heuristic)",
	     .choices = poll_names},
	    {.name = "poll-interval-us",
	     .type = KW_OPT_UINT,
	     .dest = &o.poll_interval_us,
	     .arg = "N",
	     .help = "--poll timer period (default 1000)",
	     .min = 1,
	     .max = 1000000},
	    {.name = "poll-threshold",
	     .type = KW_OPT_UINT,
	     .dest = &o.poll_threshold,
	     .arg = "N",
	     .help = "heuristic: poll at this many ops in flight (default 48)",
	     .min = 1,
	     .max = 65536},
	    {.name = "crypto-threads",
	     .type = KW_OPT_UINT,
	     .dest = &o.crypto_threads,
	     .arg = "N",
	     .help = "--backend threads: crypto threads per worker (default 1)",
	     .min = 1,
	     .max = 64},
	    {.name = "ring-size",
	     .type = KW_OPT_UINT,
	     .dest = &o.ring_size,
	     .arg = "N",
	     .help = "--backend threads: ops in flight per crypto thread (default 256)",
	     .min = 2,
	     .max = 65536},
	    {.name = "keepalive-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.keepalive_timeout_s,
	     .arg = "S",
	     .help = "close idle keep-alive connections after S s; 0: close after "
	             "each response (default 60)",
	     .max = 86400},
	    {.name = "handshake-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.handshake_timeout_s,
	     .arg = "S",
	     .help = "limit on a handshake and on reading one request (default 10)",
	     .min = 1,
	     .max = 3600},
	    {.name = "resumption",
	     .type = KW_OPT_ENUM,
	     .dest = &o.resumption_off,
	     .arg = "on|off",
	     .help = "session tickets and cache (default off: every handshake is full)",
	     .choices = on_off},
	    {.name = "async-jobs",
	     .type = KW_OPT_UINT,
	     .dest = &o.async_jobs,
	     .arg = "N",
	     .help = "bound of each worker's ASYNC job pool (default 1024)",
	     .min = 1,
	     .max = 1000000},
	    {.name = "servers",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.servers,
	     .arg = "LIST",
	     .help = "keyservers, comma-separated host:port, [v6]:port or unix:/path "
	             "(KEYWAY_SERVERS)"},
	    {.name = "client-cert",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.client_cert,
	     .arg = "FILE",
	     .help = "certificate presented to TCP keyservers (KEYWAY_CLIENT_CERT)"},
	    {.name = "client-key",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.client_key,
	     .arg = "FILE",
	     .help = "its private key (KEYWAY_CLIENT_KEY)"},
	    {.name = "ca",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.ca,
	     .arg = "FILE",
	     .help = "CA that signs the keyservers' certificates (KEYWAY_CA)"},
	    {.name = "server-name",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.server_name,
	     .arg = "NAME",
	     .help = "name expected in keyserver certificates, sent as SNI (KEYWAY_SERVER_NAME)"},
	    {.name = "timeout-ms",
	     .type = KW_OPT_UINT,
	     .dest = &o.keyless.timeout_ms,
	     .arg = "MS",
	     .help = "deadline of one keyless operation (KEYWAY_TIMEOUT_MS; default 2000)",
	     .min = 1,
	     .max = 600000},
	    {.name = "attempt-timeout-ms",
	     .type = KW_OPT_UINT,
	     .dest = &o.keyless.attempt_timeout_ms,
	     .arg = "MS",
	     .help = "one try on one keyserver before another is asked "
	             "(KEYWAY_ATTEMPT_TIMEOUT_MS; default 300)",
	     .min = 1,
	     .max = 600000},
	    {.name = "connections",
	     .type = KW_OPT_UINT,
	     .dest = &o.keyless.connections,
	     .arg = "N",
	     .help = "connections per keyserver per worker (KEYWAY_CONNECTIONS; default 2)",
	     .min = 1,
	     .max = 64},
	    {.name = "max-inflight",
	     .type = KW_OPT_UINT,
	     .dest = &o.keyless.max_inflight,
	     .arg = "N",
	     .help = "keyless operations in flight per worker before handshakes wait "
	             "(KEYWAY_MAX_INFLIGHT; default 1024)",
	     .min = 1,
	     .max = 1000000},
	    {.name = "fallback-keys",
	     .type = KW_OPT_STRING,
	     .dest = &o.keyless.fallback_keys,
	     .arg = "DIR",
	     .help = "local keys used when no keyserver answers in time (KEYWAY_FALLBACK_KEYS)"},
	    {.name = "metrics",
	     .type = KW_OPT_STRING,
	     .dest = &o.metrics,
	     .arg = "ADDR:PORT",
	     .help = "serve Prometheus metrics at http://ADDR:PORT/metrics"},
	    {.name = "log-level",
	     .type = KW_OPT_STRING,
	     .dest = &o.log_level,
	     .arg = "debug|info|warn|error",
	     .help = "minimum level logged (default info)"},
	    /* TLS termination: upstream relay, limits, access log */
	    {.name = "upstream",
	     .type = KW_OPT_STRING,
	     .dest = &o.upstream,
	     .arg = "HOST:PORT",
	     .help = "relay each connection's plaintext to this TCP server (instead of --respond)"},
	    {.name = "send-proxy-v2",
	     .type = KW_OPT_BOOL,
	     .dest = &o.send_proxy_v2,
	     .help = "begin each upstream connection with a PROXY protocol v2 header (client "
	             "address, TLS version, cipher, SNI)"},
	    {.name = "connect-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.connect_timeout_s,
	     .arg = "S",
	     .help = "limit on connecting to the upstream (default 5)",
	     .min = 1,
	     .max = 3600},
	    {.name = "idle-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.idle_timeout_s,
	     .arg = "S",
	     .help = "close a relayed connection after S s without a byte either way; 0: never "
	             "(default 300)",
	     .max = 604800},
	    {.name = "drain-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.drain_timeout_s,
	     .arg = "S",
	     .help = "after SIGTERM/SIGINT, close connections still open after S s (default 10)",
	     .max = 86400},
	    {.name = "max-connections",
	     .type = KW_OPT_UINT,
	     .dest = &o.max_connections,
	     .arg = "N",
	     .help = "open client connections, all workers together; more are accepted and "
	             "closed at once (default 0: no limit)"},
	    {.name = "max-handshake-bytes",
	     .type = KW_OPT_UINT,
	     .dest = &o.max_handshake_bytes,
	     .arg = "N",
	     .help = "close a client that sends more than N bytes before its handshake completes "
	             "(default 65536; 0: no limit)"},
	    {.name = "access-log",
	     .type = KW_OPT_STRING,
	     .dest = &o.access_log,
	     .arg = "FILE|-|off",
	     .help = "one key=value line per connection at close: appended to FILE, - for "
	             "stderr (default), off for none; SIGHUP reopens FILE"},
	    {0},
	};
	char err[1024] = "";
	struct kw_addr addr, maddr;
	struct kw_loop *loop = NULL;
	struct kpx_metrics *metrics = NULL;
	struct kpx_worker *workers = NULL;
	int *lfds = NULL, sfd = -1, status = 2, rc;
	struct kpx_tls *tls = NULL;
	unsigned started = 0;

	kw_log_init("keyway-proxy", KW_LOG_INFO);
	rc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, sizeof(err));
	if (rc == 1)
		return 0;
	if (rc < 0)
		goto fail;
	int level = kw_log_parse_level(o.log_level);
	if (level < 0) {
		snprintf(err, sizeof(err), "--log-level %s: fix: use debug, info, warn or error",
		         o.log_level);
		goto fail;
	}
	kw_log_set_level((enum kw_log_level)level);
	bool backend_seen = false;
	for (struct kw_option *op = opts; op->name != NULL; op++)
		if (strcmp(op->name, "backend") == 0)
			backend_seen = op->seen;
	if (check_options(&o, backend_seen, err, sizeof(err)) < 0)
		goto fail;
	if (kw_addr_parse(&addr, o.listen, err, sizeof(err)) < 0 || addr.is_unix) {
		if (addr.is_unix)
			snprintf(err, sizeof(err), "--listen %s: fix: give a TCP ADDR:PORT",
			         o.listen);
		goto fail;
	}
	if (o.metrics != NULL && kw_addr_parse(&maddr, o.metrics, err, sizeof(err)) < 0)
		goto fail;
	if ((o.backend != KPX_BACKEND_INLINE || o.keys_remote) &&
	    kpx_provider_start(&o, err, sizeof(err)) < 0)
		goto fail;
	if ((tls = kpx_tls_load(&o, err, sizeof(err))) == NULL)
		goto fail;
	kpx_tls_publish(tls); /* the published set owns it now */

	/* Signals go to a signalfd; a write to a closed client must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	sfd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);

	workers = calloc(o.workers, sizeof(*workers));
	lfds = calloc(o.workers, sizeof(*lfds));
	if (workers == NULL || lfds == NULL || sfd < 0 || kw_loop_new(&loop) < 0) {
		snprintf(err, sizeof(err), "out of memory or descriptors at start-up");
		goto fail;
	}
	for (unsigned i = 0; i < o.workers; i++)
		lfds[i] = -1;
	if (open_listeners(workers, o.workers, &addr, lfds, err, sizeof(err)) < 0)
		goto fail;
	for (unsigned i = 0; i < o.workers; i++) {
		if ((rc = kpx_worker_init(&workers[i], i, &o, lfds[i])) < 0) {
			snprintf(err, sizeof(err), "cannot start worker %u: %s", i,
			         kw_strerror(rc));
			goto fail;
		}
		lfds[i] = -1; /* the worker owns it now */
	}
	if (o.metrics != NULL &&
	    (rc = kpx_metrics_serve(&metrics, loop, &maddr, workers, o.workers, &o)) < 0) {
		snprintf(err, sizeof(err), "--metrics %s: %s; fix: choose a free address",
		         o.metrics, kw_strerror(rc));
		goto fail;
	}
	for (; started < o.workers; started++) {
		if ((rc = kpx_worker_start(&workers[started])) < 0) {
			snprintf(err, sizeof(err), "cannot start worker thread: %s",
			         kw_strerror(rc));
			goto fail;
		}
	}
	struct main_ctx mc = {.workers = workers, .nworkers = o.workers, .o = &o};
	kw_io_init(&mc.sig_io, on_signal, &mc);
	kw_io_start(loop, &mc.sig_io, sfd, KW_EV_READ);
	char where[300];
	kw_addr_format(&addr, where, sizeof(where));
	kw_info("keyway-proxy listening on %s: %u worker%s, backend %s, async %s, notify %s, "
	        "poll %s%s%s",
	        where, o.workers, o.workers == 1 ? "" : "s", backend_names[o.backend],
	        on_off[o.async_off], notify_names[o.notify], poll_names[o.poll],
	        o.metrics != NULL ? ", metrics on " : "", o.metrics != NULL ? o.metrics : "");
	status = kw_loop_run(loop) < 0 ? 1 : 0;
	kw_io_stop(loop, &mc.sig_io);
	goto out;
fail:
	fprintf(stderr, "keyway-proxy: %s\n", err);
out:
	for (unsigned i = 0; i < started; i++)
		kpx_worker_stop(&workers[i]);
	for (unsigned i = 0; i < started; i++)
		kpx_worker_join(&workers[i]);
	kpx_metrics_free(metrics);
	for (unsigned i = 0; workers != NULL && i < o.workers; i++)
		if (workers[i].loop != NULL)
			kpx_worker_cleanup(&workers[i]);
	for (unsigned i = 0; lfds != NULL && i < o.workers; i++)
		if (lfds[i] >= 0)
			close(lfds[i]);
	free(workers);
	free(lfds);
	if (sfd >= 0)
		close(sfd);
	kw_loop_free(loop);
	kpx_tls_publish(NULL); /* drops the last set; every SSL is gone by now */
	kpx_provider_stop(&o);
	kpx_alog_close(&o);
	kw_config_free(opts);
	return status;
}
