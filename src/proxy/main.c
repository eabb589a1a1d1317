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
#include <sys/signalfd.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "accesslog.h"
#include "keycheck.h"
#include "keys.h"
#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/rsa_batch.h"
#include "keyway/quic.h"
#include "keyway/signals.h"
#include "metrics.h"
#include "proxy.h"
#include "quic_listen.h"
#include "tlsctx.h"
#include "upstream.h"
#include "worker.h"

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

/* The choice lists, in the order of their enums' values (the parser stores the index). */
static const char *const backend_names[] = {"inline", "threads", "keyless", NULL};
static const char *const notify_names[] = {"callback", "fd", NULL};
static const char *const poll_names[] = {"heuristic", "timer", "busy", NULL};
static const char *const quic_crypto_names[] = {"engine", "gnutls", NULL};
static const char *const quic_retry_names[] = {"auto", "on", "off", NULL};
/* In enum kw_quic_sched's order. */
static const char *const quic_sched_names[] = {"inline", "sjbsq", "hash", "jsq", NULL};
_Static_assert(sizeof(enum kpx_backend_kind) == sizeof(int) &&
                   sizeof(enum kpx_notify) == sizeof(int) && sizeof(enum kpx_poll) == sizeof(int) &&
                   sizeof(enum kpx_quic_crypto) == sizeof(int) &&
                   sizeof(enum kpx_quic_retry) == sizeof(int),
               "KW_OPT_ENUM stores an int");

static struct kpx_options o = {
    .async = true,
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
    .quic_idle_timeout_s = 30,
    .quic_handshake_threads = 4,
    .quic_engine = "auto",
    .quic_crypto_threads = 1,
};

/* One entry per line: the table reads as a table. */
/* clang-format off */
static struct kw_option opts[] = {
    KW_OPT_STR("listen", &o.listen, "ADDR:PORT", "TLS listener (one SO_REUSEPORT socket per worker)", .required = true),
    KW_OPT_MANY("cert", &o.certs, "FILE", "certificate chain, PEM; repeat with --key for more (SNI picks; the first is the default)", .required = true),
    KW_OPT_MANY("key", &o.keys, "FILE|URI", "private key of the --cert before it: local PEM, keyway: URI or KEYWAY KEY reference PEM", .required = true),
    KW_OPT_MANY("alpn", &o.alpn, "LIST", "ALPN protocols offered, in order of preference (default http/1.1)"),
    KW_OPT_FLAG("allow-group-readable-keys", &o.allow_group_readable_keys, "accept a local --key and --client-key readable by group or others"),
    KW_OPT_FLAG("respond", &o.respond, "answer every HTTP/1.1 request with a small fixed response"),
    KW_OPT_NUM("workers", &o.workers, "N", "worker threads (default: online cores)", 1, 256),
    KW_OPT_CHOICE("backend", &o.backend, "inline|threads|keyless", "where private-key operations run (default: inline for a local key)", backend_names),
    KW_OPT_ONOFF("async", &o.async, "pause handshakes on offloaded operations (off: block; default on)"),
    KW_OPT_CHOICE("notify", &o.notify, "callback|fd", "how a completed operation resumes its handshake (default callback)", notify_names),
    KW_OPT_CHOICE("poll", &o.poll, "heuristic|timer|busy", "when a ring backend is polled (default heuristic)", poll_names),
    KW_OPT_NUM("poll-interval-us", &o.poll_interval_us, "N", "--poll timer period (default 1000)", 1, 1000000),
    KW_OPT_NUM("poll-threshold", &o.poll_threshold, "N", "heuristic: poll at this many ops in flight (default 48)", 1, 65536),
    KW_OPT_NUM("crypto-threads", &o.crypto_threads, "N", "--backend threads: crypto threads per worker (default 1)", 1, 64),
    KW_OPT_NUM("ring-size", &o.ring_size, "N", "--backend threads: ops in flight per crypto thread (default 256)", 2, 65536),
    KW_OPT_ONOFF("rsa-batch", &o.rsa_batch, "--backend threads: compute queued RSA signatures and decryptions of local keys in multi-buffer batches (default on where the CPU has AVX-512 IFMA)"),
    KW_OPT_NUM("keepalive-timeout", &o.keepalive_timeout_s, "S", "close idle keep-alive connections after S s; 0: close after each response (default 60)", 0, 86400),
    KW_OPT_NUM("handshake-timeout", &o.handshake_timeout_s, "S", "limit on a handshake and on reading one request (default 10)", 1, 3600),
    KW_OPT_ONOFF("resumption", &o.resumption, "session tickets and cache (default off: every handshake is full)"),
    KW_OPT_NUM("async-jobs", &o.async_jobs, "N", "bound of each worker's ASYNC job pool (default 1024)", 1, 1000000),
    KW_OPT_STR("servers", &o.keyless.servers, "LIST", "keyservers, comma-separated host:port, [v6]:port or unix:/path (KEYWAY_SERVERS)"),
    KW_OPT_STR("client-cert", &o.keyless.client_cert, "FILE", "certificate presented to TCP keyservers (KEYWAY_CLIENT_CERT)"),
    KW_OPT_STR("client-key", &o.keyless.client_key, "FILE", "its private key (KEYWAY_CLIENT_KEY)"),
    KW_OPT_STR("ca", &o.keyless.ca, "FILE", "CA that signs the keyservers' certificates (KEYWAY_CA)"),
    KW_OPT_STR("server-name", &o.keyless.server_name, "NAME", "name expected in keyserver certificates, sent as SNI (KEYWAY_SERVER_NAME)"),
    KW_OPT_NUM("timeout-ms", &o.keyless.timeout_ms, "MS", "deadline of one keyless operation (KEYWAY_TIMEOUT_MS; default 2000)", 1, 600000),
    KW_OPT_NUM("attempt-timeout-ms", &o.keyless.attempt_timeout_ms, "MS", "one try on one keyserver before another is asked (KEYWAY_ATTEMPT_TIMEOUT_MS; default 300)", 1, 600000),
    KW_OPT_NUM("connections", &o.keyless.connections, "N", "connections per keyserver per worker (KEYWAY_CONNECTIONS; default 2)", 1, 64),
    KW_OPT_NUM("max-inflight", &o.keyless.max_inflight, "N", "keyless operations in flight per worker before handshakes wait (KEYWAY_MAX_INFLIGHT; default 1024)", 1, 1000000),
    KW_OPT_FLAG("require-keys", &o.require_keys, "do not serve a certificate whose keyway key no keyserver holds (checked after start-up and each reload)"),
    KW_OPT_STR("fallback-keys", &o.keyless.fallback_keys, "DIR", "local keys used when no keyserver answers in time (KEYWAY_FALLBACK_KEYS)"),
    KW_OPT_STR("metrics", &o.metrics, "ADDR:PORT", "serve Prometheus metrics at http://ADDR:PORT/metrics"),
    KW_OPT_STR("log-level", &o.log_level, "debug|info|warn|error", "minimum level logged (default info)"),
    /* TLS termination: upstream, limits, access log */
    KW_OPT_STR("upstream", &o.upstream, "HOST:PORT", "relay each connection's plaintext to this TCP server (instead of --respond)"),
    KW_OPT_FLAG("send-proxy-v2", &o.send_proxy_v2, "begin each upstream connection with a PROXY protocol v2 header (client address, TLS version, cipher, SNI)"),
    KW_OPT_NUM("connect-timeout", &o.connect_timeout_s, "S", "limit on connecting to the upstream (default 5)", 1, 3600),
    KW_OPT_NUM("idle-timeout", &o.idle_timeout_s, "S", "close a relayed connection after S s without a byte either way; 0: never (default 300)", 0, 604800),
    KW_OPT_NUM("drain-timeout", &o.drain_timeout_s, "S", "after SIGTERM/SIGINT, close connections still open after S s (default 10)", 0, 86400),
    KW_OPT_NUM("max-connections", &o.max_connections, "N", "open client connections, all workers together; more are accepted and closed at once (default 0: no limit)", 0, 0),
    KW_OPT_NUM("max-handshake-bytes", &o.max_handshake_bytes, "N", "close a client that sends more than N bytes before its handshake completes (default 65536; 0: no limit)", 0, 0),
    KW_OPT_STR("access-log", &o.access_log, "FILE|-|off", "one key=value line per connection at close: appended to FILE, - for stderr (default), off for none; SIGHUP reopens FILE"),
    /* HTTP/3 */
    KW_OPT_STR("quic-listen", &o.quic_listen, "ADDR:PORT", "HTTP/3 over QUIC on this UDP address too (one SO_REUSEPORT socket per worker; same certificates and mode)"),
    KW_OPT_NUM("quic-idle-timeout", &o.quic_idle_timeout_s, "S", "QUIC idle timeout (transport parameter max_idle_timeout; default 30)", 1, 3600),
    KW_OPT_NUM("quic-handshake-threads", &o.quic_handshake_threads, "N", "threads that run QUIC handshake steps signing with keyserver-held keys, so the loops never wait on a keyserver (default 4; 0: sign on the worker's loop, blocking it)", 0, 256),
    KW_OPT_CHOICE("quic-retry", &o.quic_retry, "auto|on|off", "answer client Initials with Retry, so clients prove their address first: auto (default: when a worker has 64 handshakes in progress), on (always) or off", quic_retry_names),
    KW_OPT_CHOICE("quic-crypto", &o.quic_crypto, "engine|gnutls", "who protects HTTP/3's 1-RTT packets sent: Keyway's QUIC engine, in batches (default), or ngtcp2's GnuTLS callbacks", quic_crypto_names),
    KW_OPT_STR("quic-engine", &o.quic_engine, "evp|ipsec-mb|auto", "--quic-crypto engine: the engine (default auto: ipsec-mb where built and supported, else evp)"),
    KW_OPT_CHOICE("quic-sched", &o.quic_sched, "inline|sjbsq|hash|jsq", "--quic-crypto engine: where batches are protected: inline on the worker (default: measured fastest on small machines), or on --quic-crypto-threads crypto threads per worker picked by sjbsq, hash or jsq", quic_sched_names),
    KW_OPT_NUM("quic-crypto-threads", &o.quic_crypto_threads, "N", "--quic-sched other than inline: crypto threads per worker (default 1)", 1, 64),
    KW_OPT_END,
};
/* clang-format on */

static bool option_seen(const char *name)
{
	for (const struct kw_option *op = opts; op->name != NULL; op++)
		if (strcmp(op->name, name) == 0)
			return op->seen;
	return false;
}

/*
 * Pairs of --cert and --key, and the backend they fit: keys held by
 * keyservers want keyless (the default when any is given), local ones
 * inline or threads. Mixed sets are allowed with any backend: with keyless
 * the local keys sign on the loop thread; otherwise keyserver-held keys go
 * through the provider's own I/O thread.
 */
static int check_keys(char *err, size_t errlen)
{
	size_t ncerts = 0, nkeys = 0;
	while (o.certs != NULL && o.certs[ncerts] != NULL)
		ncerts++;
	while (o.keys != NULL && o.keys[nkeys] != NULL)
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
		bool r = kpx_key_kind(o.keys[i]) == KPX_KEY_KEYWAY;
		remote |= r;
		local |= !r;
	}
	o.keys_remote = remote;
	if (!option_seen("backend")) {
		o.backend = remote ? KPX_BACKEND_KEYLESS : KPX_BACKEND_INLINE;
	} else if (o.backend == KPX_BACKEND_KEYLESS && !remote) {
		snprintf(err, errlen,
		         "--backend keyless, but every --key is a local private key; fix: use "
		         "--backend inline or threads, or give a keyway: URI or KEYWAY KEY "
		         "reference");
		return -KW_ECONFIG;
	} else if (o.backend != KPX_BACKEND_KEYLESS && !local) {
		snprintf(err, errlen,
		         "--backend %s does not fit keys held by keyservers; fix: use --backend "
		         "keyless, or give a local PEM private key",
		         backend_names[o.backend]);
		return -KW_ECONFIG;
	}
	return 0;
}

static int check_options(char *err, size_t errlen)
{
	if (o.respond == (o.upstream != NULL)) {
		snprintf(err, errlen,
		         "%s; fix: give exactly one of --respond (answer each request with a fixed "
		         "response) or --upstream HOST:PORT (relay to a TCP server)",
		         o.respond ? "both --respond and --upstream given" : "no mode given");
		return -KW_ECONFIG;
	}
	if (kpx_upstream_check(&o, opts, err, errlen) < 0)
		return -KW_ECONFIG;
	/* Every relayed connection takes two descriptors. */
	int nrc = kw_raise_nofile(NULL);
	if (nrc < 0)
		kw_warn("cannot raise the descriptor limit: %s", kw_strerror(nrc));
	if (kpx_accesslog_open(&o, err, errlen) < 0)
		return -KW_ECONFIG;
	if (check_keys(err, errlen) < 0)
		return -KW_ECONFIG;
	/* On where the kernel runs: elsewhere a batch would compute lane by lane anyway. */
	o.rsa_batch_given = option_seen("rsa-batch");
	if (!o.rsa_batch_given)
		o.rsa_batch = kw_rsa_batch_available();
	if (o.quic_sched == KW_QUIC_SCHED_INLINE && option_seen("quic-crypto-threads")) {
		snprintf(err, errlen,
		         "--quic-crypto-threads given with --quic-sched inline (no "
		         "crypto threads); fix: add --quic-sched sjbsq, hash or jsq");
		return -KW_ECONFIG;
	}
	if (o.quic_sched != KW_QUIC_SCHED_INLINE && o.quic_crypto == KPX_QUIC_CRYPTO_GNUTLS) {
		snprintf(err, errlen,
		         "--quic-sched %s needs --quic-crypto engine; fix: drop "
		         "--quic-sched or use --quic-crypto engine",
		         quic_sched_names[o.quic_sched]);
		return -KW_ECONFIG;
	}
	if (o.workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o.workers = n > 0 ? (unsigned)(n > 256 ? 256 : n) : 1;
	}
	return 0;
}

/* Everything main starts, so one place stops it. */
struct main_ctx {
	struct kw_loop *loop;
	struct kpx_metrics *metrics;
	struct kpx_keycheck *keycheck; /* asks keyservers for each keyway key */
	struct kpx_worker *workers;
	unsigned started; /* worker threads running */
	int *lfds;        /* listeners not yet handed to a worker */
	int *qfds;        /* --quic-listen sockets not yet handed to a worker */
	int sfd;          /* the signalfd */
	struct kw_io sig_io;
	struct kw_addr addr, maddr; /* --listen, --metrics (--quic-listen: o.quic_addr) */
};

/*
 * SIGHUP: load every --cert/--key pair again (files re-read, keyway keys
 * re-resolved) and publish the new set for new connections; open ones keep
 * theirs. A set that fails to load changes nothing.
 */
static void reload_certs(struct main_ctx *mc)
{
	char err[1024] = "";
	struct kpx_tls *t = kpx_tls_load(&o, err, sizeof(err));
	if (t == NULL) {
		kw_error("SIGHUP: reload failed, keeping the certificates in use: %s", err);
		return;
	}
	size_t n = kpx_tls_count(t);
	kpx_tls_ref(t); /* for the key check; the published set owns the other reference */
	kpx_tls_publish(t);
	kpx_keycheck_run(mc->keycheck, t);
	kpx_tls_unref(t);
	kw_info("SIGHUP: reloaded %zu certificate%s; new connections use them", n,
	        n == 1 ? "" : "s");
}

static void on_signal(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			reload_certs(arg);
			if (kpx_accesslog_reopen(&o) < 0)
				kw_error("SIGHUP: cannot reopen --access-log %s: %s", o.access_log,
				         strerror(errno));
		} else if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) {
			kw_info("%s: draining connections and exiting",
			        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			kw_loop_stop(loop);
		}
	}
}

static int open_listeners(struct kw_addr *addr, int *fds, char *err, size_t errlen)
{
	char text[300];
	for (unsigned i = 0; i < o.workers; i++) {
		/* Port 0: the first socket pins addr's port, which every worker then shares. */
		fds[i] = kw_listen_tcp_pin(addr, true, 1024);
		if (fds[i] < 0) {
			kw_addr_format(addr, text, sizeof(text));
			snprintf(err, errlen, "cannot listen on %s: %s; fix: choose a free address",
			         text, kw_strerror(fds[i]));
			return fds[i];
		}
	}
	return 0;
}

/* parse reads the options and checks them: 0, 1 after --help, or -KW_ECONFIG. */
static int parse(struct main_ctx *mc, int argc, char **argv, char *err, size_t errlen)
{
	int rc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, errlen);
	if (rc != 0)
		return rc;
	int level = kw_log_parse_level(o.log_level);
	if (level < 0)
		return kw_config_errorf(opts, "log-level", err, errlen,
		                        "'%s': fix: use debug, info, warn or error", o.log_level);
	kw_log_set_level((enum kw_log_level)level);
	if (check_options(err, errlen) < 0)
		return -KW_ECONFIG;
	char why[256];
	if (kw_addr_parse(&mc->addr, o.listen, why, sizeof(why)) < 0)
		return kw_config_errorf(opts, "listen", err, errlen, "%s", why);
	if (mc->addr.is_unix)
		return kw_config_errorf(opts, "listen", err, errlen,
		                        "'%s': fix: give a TCP ADDR:PORT", o.listen);
	if (o.quic_listen != NULL &&
	    (kw_addr_parse(&o.quic_addr, o.quic_listen, why, sizeof(why)) < 0 ||
	     o.quic_addr.is_unix))
		return kw_config_errorf(opts, "quic-listen", err, errlen,
		                        "'%s': fix: give a UDP ADDR:PORT", o.quic_listen);
	if (o.quic_listen != NULL && o.quic_crypto == KPX_QUIC_CRYPTO_ENGINE &&
	    !kw_quic_engine_available(o.quic_engine))
		return kw_config_errorf(opts, "quic-engine", err, errlen,
		                        "'%s' is not available here; fix: use evp, ipsec-mb (when "
		                        "built with libipsec-mb and the CPU has AES-NI) or auto",
		                        o.quic_engine);
	if (o.metrics != NULL && kw_addr_parse(&mc->maddr, o.metrics, why, sizeof(why)) < 0)
		return kw_config_errorf(opts, "metrics", err, errlen, "%s", why);
	return 0;
}

/* load_keys starts the built-in provider if a key or the backend needs it and publishes
 * the first certificate set. 0, -EINVAL (a setting is missing) or -KW_ECONFIG. */
static int load_keys(char *err, size_t errlen)
{
	int rc;
	if ((o.backend != KPX_BACKEND_INLINE || o.keys_remote) &&
	    (rc = kpx_provider_start(&o, err, errlen)) < 0)
		return rc == -EINVAL ? rc : -KW_ECONFIG;
	struct kpx_tls *tls = kpx_tls_load(&o, err, errlen);
	if (tls == NULL)
		return -KW_ECONFIG;
	kpx_tls_publish(tls); /* the published set owns it now */
	return 0;
}

/* start opens the listeners and the signalfd, starts the workers and serves --metrics. */
static int start(struct main_ctx *mc, char *err, size_t errlen)
{
	int rc;

	/* Signals go to a signalfd; a write to a closed client must not kill the process. */
	signal(SIGPIPE, SIG_IGN);
	mc->sfd = kw_signalfd_open((const int[]){SIGTERM, SIGINT, SIGHUP}, 3);

	mc->workers = calloc(o.workers, sizeof(*mc->workers));
	mc->lfds = calloc(o.workers, sizeof(*mc->lfds));
	mc->qfds = calloc(o.workers, sizeof(*mc->qfds));
	if (mc->workers == NULL || mc->lfds == NULL || mc->qfds == NULL || mc->sfd < 0 ||
	    kw_loop_new(&mc->loop) < 0) {
		snprintf(err, errlen, "out of memory or descriptors at start-up");
		return -ENOMEM;
	}
	for (unsigned i = 0; i < o.workers; i++)
		mc->lfds[i] = mc->qfds[i] = -1;
	/* UDP first: --quic-listen is bound before the TCP listener accepts anyone. */
	if (o.quic_listen != NULL &&
	    (rc = kpx_quic_open_sockets(&o.quic_addr, o.workers, mc->qfds, err, errlen)) < 0)
		return rc;
	if ((rc = open_listeners(&mc->addr, mc->lfds, err, errlen)) < 0)
		return rc;
	if (o.quic_listen != NULL)
		snprintf(o.alt_svc, sizeof(o.alt_svc), "Alt-Svc: h3=\":%d\"; ma=86400\r\n",
		         kw_addr_port(&o.quic_addr));
	for (unsigned i = 0; i < o.workers; i++) {
		if ((rc = kpx_worker_init(&mc->workers[i], i, &o, mc->lfds[i])) < 0) {
			snprintf(err, errlen, "cannot start worker %u: %s", i, kw_strerror(rc));
			return rc;
		}
		mc->lfds[i] = -1; /* the worker owns it now */
		mc->workers[i].qfd = mc->qfds[i];
		mc->qfds[i] = -1;
	}
	if (o.metrics != NULL && (rc = kpx_metrics_serve(&mc->metrics, mc->loop, &mc->maddr,
	                                                 mc->workers, o.workers, &o)) < 0) {
		snprintf(err, errlen, "--metrics %s: %s; fix: choose a free address", o.metrics,
		         kw_strerror(rc));
		return rc;
	}
	for (; mc->started < o.workers; mc->started++) {
		if ((rc = kpx_worker_start(&mc->workers[mc->started])) < 0) {
			snprintf(err, errlen, "cannot start worker thread: %s", kw_strerror(rc));
			return rc;
		}
	}
	kw_io_init(&mc->sig_io, on_signal, mc);
	kw_io_start(mc->loop, &mc->sig_io, mc->sfd, KW_EV_READ);
	/* The listeners are open and serving: now ask, without waiting, for the keys. */
	if ((mc->keycheck = kpx_keycheck_new(mc->loop, &o)) == NULL) {
		snprintf(err, errlen, "out of memory at start-up");
		return -ENOMEM;
	}
	uint64_t gen;
	struct kpx_tls *t = kpx_tls_current(&gen);
	if (t != NULL)
		kpx_keycheck_run(mc->keycheck, t);
	kpx_tls_unref(t);
	return 0;
}

/* run serves until SIGTERM/SIGINT: 0, or 1 if the loop failed. */
static int run(struct main_ctx *mc)
{
	char where[300], mwhere[300] = "", qwhere[300] = "";
	kw_addr_format(&mc->addr, where, sizeof(where));
	if (o.quic_listen != NULL) /* the port bound: --quic-listen HOST:0 shows the kernel's */
		kw_addr_format(&o.quic_addr, qwhere, sizeof(qwhere));
	if (o.metrics != NULL) /* the address bound: --metrics HOST:0 shows the kernel's port */
		kw_addr_format(&mc->maddr, mwhere, sizeof(mwhere));
	char quic[sizeof(qwhere) + 160] = "", sched[64] = "";
	if (o.quic_sched != KW_QUIC_SCHED_INLINE)
		snprintf(sched, sizeof(sched), ", %s over %u crypto thread%s per worker",
		         quic_sched_names[o.quic_sched], o.quic_crypto_threads,
		         o.quic_crypto_threads == 1 ? "" : "s");
	if (o.quic_listen != NULL) {
		/* The engine auto resolves to, as every worker's engine instance does. */
		const char *engine = strcmp(o.quic_engine, "auto") != 0     ? o.quic_engine
		                     : kw_quic_engine_available("ipsec-mb") ? "ipsec-mb"
		                                                            : "evp";
		snprintf(quic, sizeof(quic), ", HTTP/3 on udp %s (1-RTT protection: %s%s%s%s)",
		         qwhere, quic_crypto_names[o.quic_crypto],
		         o.quic_crypto == KPX_QUIC_CRYPTO_ENGINE ? " " : "",
		         o.quic_crypto == KPX_QUIC_CRYPTO_ENGINE ? engine : "", sched);
	}
	kw_info("keyway-proxy listening on %s: %u worker%s, backend %s, async %s, notify %s, "
	        "poll %s%s%s%s",
	        where, o.workers, o.workers == 1 ? "" : "s", backend_names[o.backend],
	        o.async ? "on" : "off", notify_names[o.notify], poll_names[o.poll],
	        o.metrics != NULL ? ", metrics on " : "", mwhere, quic);
	int status = kw_loop_run(mc->loop) < 0 ? 1 : 0;
	kw_io_stop(mc->loop, &mc->sig_io);
	return status;
}

/* stop drains and stops whatever start got to, then frees everything main made. */
static void stop(struct main_ctx *mc)
{
	for (unsigned i = 0; i < mc->started; i++)
		kpx_worker_stop(&mc->workers[i]);
	for (unsigned i = 0; i < mc->started; i++)
		kpx_worker_join(&mc->workers[i]);
	kpx_metrics_free(mc->metrics);
	kpx_keycheck_free(mc->keycheck);
	for (unsigned i = 0; mc->workers != NULL && i < o.workers; i++)
		if (mc->workers[i].loop != NULL)
			kpx_worker_cleanup(&mc->workers[i]);
	for (unsigned i = 0; mc->lfds != NULL && i < o.workers; i++)
		if (mc->lfds[i] >= 0)
			close(mc->lfds[i]);
	for (unsigned i = 0; mc->qfds != NULL && i < o.workers; i++)
		if (mc->qfds[i] >= 0)
			close(mc->qfds[i]);
	free(mc->workers);
	free(mc->lfds);
	free(mc->qfds);
	if (mc->sfd >= 0)
		close(mc->sfd);
	kw_loop_free(mc->loop);
	kpx_tls_publish(NULL); /* drops the last set; every SSL is gone by now */
	kpx_provider_stop(&o);
	kpx_accesslog_close(&o);
	kw_config_free(opts);
}

int main(int argc, char **argv)
{
	struct main_ctx mc = {.sfd = -1};
	char err[1024] = "";
	int status = 2;

	kw_log_init("keyway-proxy", KW_LOG_INFO);
	int rc = parse(&mc, argc, argv, err, sizeof(err));
	if (rc == 1)
		return 0;
	/* A bad option is a usage error (2); a file that does not load, or a
	 * private key readable by others (refused before anything else is
	 * loaded), is a failure (1). */
	if (rc != 0) {
		fprintf(stderr, "keyway-proxy: %s\n", err);
	} else if (kpx_check_key_modes(&o, err, sizeof(err)) < 0) {
		fprintf(stderr, "keyway-proxy: %s\n", err);
		status = 1;
		fprintf(stderr, "keyway-proxy: %s\n", err);
	} else if ((rc = load_keys(err, sizeof(err))) < 0) {
		fprintf(stderr, "keyway-proxy: %s\n", err);
		status = rc == -EINVAL ? 2 : 1;
	} else if (start(&mc, err, sizeof(err)) == 0) {
		status = run(&mc);
	} else {
		fprintf(stderr, "keyway-proxy: %s\n", err);
	}
	stop(&mc);
	return status;
}
