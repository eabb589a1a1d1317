/*
 * keywayd - a keyless keyserver speaking Cloudflare's keyless protocol as
 * gokeyless v1.17.6 does.
 *
 * The main thread parses options, opens everything, starts the workers and
 * then only handles signals (SIGHUP reload, SIGTERM/SIGINT drain) through a
 * signalfd and serves --metrics, both in its own kw_loop. Exit status: 0
 * after a clean stop, 2 for a start-up error (one line naming the file or
 * address and the fix), 1 for a failure later on.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keystore.h"
#include "server.h"

static const char usage[] =
    "usage: keywayd --keys DIR | --pkcs11 URI [--pkcs11-module PATH]\n"
    "               [--listen ADDR:PORT --tls-cert FILE --tls-key FILE --client-ca FILE]\n"
    "               [--unix PATH] [--workers N] [--metrics ADDR:PORT] [--config FILE]\n"
    "               [--pid-file FILE] [options]\n"
    "A keyless keyserver: signs and decrypts with the keys in DIR and/or on PKCS#11\n"
    "tokens for keyless clients\n"
    "over mutual TLS (--listen) and/or a Unix socket (--unix); --tls-cert, --tls-key and\n"
    "--client-ca are needed only with --listen. SIGHUP reloads the keys (re-reading\n"
    "the PKCS#11 tokens), TLS files, CRLs and ACL; SIGTERM drains and exits.";

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

struct main_ctx {
	struct kwd_server *srv;
	int sfd; /* the signalfd, -1 before */
	struct kw_io sig_io;
	bool stopping;
};

static void on_signal(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct main_ctx *mc = arg;
	struct signalfd_siginfo si;
	while (read(fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		if (si.ssi_signo == SIGHUP) {
			kw_info("SIGHUP: reloading keys and TLS files");
			kwd_server_reload(mc->srv);
		} else if ((si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT) && !mc->stopping) {
			mc->stopping = true;
			kw_info("%s: no longer accepting; draining connections (at most %u s)",
			        si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
			        mc->srv->opt->drain_timeout_s);
			kwd_server_drain(mc->srv);
			kw_loop_stop(loop);
		}
	}
}

/* check_options applies the rules the option table cannot express. */
static int check_options(struct kwd_options *o, char *err, size_t errlen)
{
	bool tokens = o->pkcs11 != NULL && o->pkcs11[0] != NULL;
	if (o->keys_dir == NULL && !tokens) {
		snprintf(err, errlen,
		         "no keys to serve; fix: pass --keys DIR (key files) and/or --pkcs11 URI "
		         "(keys on a PKCS#11 token)");
		return -KW_ECONFIG;
	}
	if (!tokens && (o->pkcs11_module != NULL || o->pkcs11_threads != 0))
		kw_warn("--pkcs11-module/--pkcs11-threads are unused without --pkcs11");
	if (o->listen == NULL && o->unix_path == NULL) {
		snprintf(err, errlen,
		         "nothing to listen on; fix: pass --listen ADDR:PORT (mutual "
		         "TLS) and/or --unix PATH");
		return -KW_ECONFIG;
	}
	if (o->listen != NULL) {
		const char *missing = o->tls_cert == NULL    ? "--tls-cert"
		                      : o->tls_key == NULL   ? "--tls-key"
		                      : o->client_ca == NULL ? "--client-ca"
		                                             : NULL;
		if (missing != NULL) {
			snprintf(err, errlen,
			         "--listen needs %s; fix: pass --tls-cert FILE --tls-key FILE "
			         "--client-ca FILE (the TCP listener always uses mutual TLS)",
			         missing);
			return -KW_ECONFIG;
		}
	} else if (o->tls_cert || o->tls_key || o->client_ca || o->client_crl) {
		kw_warn(
		    "--tls-cert/--tls-key/--client-ca/--client-crl are unused without --listen");
	}
	if (o->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->workers = n > 0 ? (unsigned)(n > 1024 ? 1024 : n) : 1;
	}
	return 0;
}

/* log_started says what is served where; metrics is the --metrics address bound, or "". */
static void log_started(const struct kwd_server *s, const char *metrics)
{
	char where[1024] = "", addr[300];
	size_t used = 0;
	if (s->has_tcp) {
		kw_addr_format(&s->tcp_addr, addr, sizeof(addr));
		used +=
		    (size_t)snprintf(where + used, sizeof(where) - used, "%s (mutual TLS)", addr);
	}
	if (s->opt->unix_path != NULL && used < sizeof(where))
		used +=
		    (size_t)snprintf(where + used, sizeof(where) - used, "%sunix:%s (mode %04o)",
		                     used ? ", " : "", s->opt->unix_path, s->unix_mode);
	if (metrics[0] != '\0' && used < sizeof(where))
		snprintf(where + used, sizeof(where) - used, "; metrics on http://%s/metrics",
		         metrics);
	const struct kwd_keystore *ks = s->gens.gen->ks;
	size_t n = kwd_keystore_count(ks), tokens = 0;
	char from[1200];
	for (size_t i = 0; i < n; i++)
		tokens += kwd_keystore_at(ks, i)->p11 != NULL;
	if (tokens == 0)
		snprintf(from, sizeof(from), "%s", s->opt->keys_dir);
	else if (s->opt->keys_dir == NULL)
		snprintf(from, sizeof(from), "PKCS#11 tokens (%u device thread%s)",
		         kwd_devpool_threads(s->devpool),
		         kwd_devpool_threads(s->devpool) == 1 ? "" : "s");
	else
		snprintf(from, sizeof(from), "%s and %zu on PKCS#11 tokens (%u device thread%s)",
		         s->opt->keys_dir, tokens, kwd_devpool_threads(s->devpool),
		         kwd_devpool_threads(s->devpool) == 1 ? "" : "s");
	kw_info("keywayd started: %zu key%s from %s, %u worker%s, listening on %s", n,
	        n == 1 ? "" : "s", from, s->nworkers, s->nworkers == 1 ? "" : "s", where);
}

/* watch_signals delivers SIGHUP, SIGTERM and SIGINT (blocked in every thread) to loop. */
static int watch_signals(struct main_ctx *mc, struct kw_loop *loop, const sigset_t *set)
{
	mc->sfd = signalfd(-1, set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (mc->sfd < 0) {
		int rc = -errno;
		kw_error("signalfd: %s", strerror(-rc));
		return rc;
	}
	int rc = kw_io_start(loop, &mc->sig_io, mc->sfd, KW_EV_READ);
	if (rc < 0)
		kw_error("cannot watch signals: %s", kw_strerror(rc));
	return rc;
}

/*
 * check_tcp_address checks that option name's value (NULL: not given) is a TCP
 * ADDR:PORT, naming where the value came from (FILE:LINE: key, or --key).
 */
static int check_tcp_address(const struct kw_option *opts, const char *name, const char *value,
                             const char *example, char *err, size_t errlen)
{
	struct kw_addr a;
	char why[256];
	if (value == NULL)
		return 0;
	if (kw_addr_parse(&a, value, why, sizeof(why)) < 0)
		return kw_config_errorf(opts, name, err, errlen, "%s; fix: use ADDR:PORT, e.g. %s",
		                        why, example);
	if (a.is_unix)
		return kw_config_errorf(
		    opts, name, err, errlen,
		    "'%s': a TCP address is needed; fix: use ADDR:PORT, e.g. %s%s", value, example,
		    strcmp(name, "listen") == 0 ? ", or --unix for a socket" : "");
	return 0;
}

/*
 * parse_duration reads DURATION: a decimal number of seconds, or one followed
 * by ms, s or m ("500ms", "5s", "2m"). Returns 0 with *ns set, or -1.
 */
static int parse_duration(const char *text, uint64_t *ns)
{
	uint64_t v = 0;
	const char *p = text;
	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		v = v * 10 + (uint64_t)(*p - '0');
		if (v > 86400000)
			return -1;
	}
	uint64_t unit = 1000000000u;
	if (strcmp(p, "ms") == 0)
		unit = 1000000u;
	else if (strcmp(p, "m") == 0)
		unit = 60000000000u;
	else if (*p != '\0' && strcmp(p, "s") != 0)
		return -1;
	*ns = v * unit;
	return 0;
}

/* check_addresses checks --listen, --metrics and --handshake-timeout before anything starts. */
static int check_addresses(const struct kw_option *opts, struct kwd_options *o, char *err,
                           size_t errlen)
{
	int rc = check_tcp_address(opts, "listen", o->listen, "127.0.0.1:2407", err, errlen);
	if (rc == 0)
		rc = check_tcp_address(opts, "metrics", o->metrics, "127.0.0.1:2406", err, errlen);
	if (rc == 0 && (parse_duration(o->handshake_timeout, &o->handshake_ns) < 0 ||
	                o->handshake_ns == 0 || o->handshake_ns > 3600000000000u)) {
		snprintf(
		    err, errlen,
		    "--handshake-timeout %s: not a duration between 1ms and 1h; fix: e.g. 5s or "
		    "500ms",
		    o->handshake_timeout);
		rc = -KW_ECONFIG;
	}
	return rc;
}

/*
 * raise_nofile lifts the soft descriptor limit to the hard one (every
 * connection is a descriptor) and derives the --max-connections default
 * from it, keeping NOFILE_RESERVE descriptors for key files, metrics and
 * reloads plus NOFILE_PER_WORKER for each worker's listener, epoll, wake-up
 * and spare descriptors.
 */
#define NOFILE_RESERVE 32
#define NOFILE_PER_WORKER 4
static void raise_nofile(struct kwd_options *o)
{
	unsigned long lim = 0;
	int rc = kw_raise_nofile(&lim);
	if (rc < 0)
		kw_warn("cannot raise the descriptor limit: %s; it stays at %lu", kw_strerror(rc),
		        lim);
	else
		kw_info("descriptor limit: %lu", lim);
	if (o->max_connections == 0) {
		unsigned long keep = NOFILE_RESERVE + (unsigned long)NOFILE_PER_WORKER * o->workers;
		unsigned long m = lim > keep * 2 ? lim - keep : lim / 2;
		o->max_connections = m > UINT_MAX ? UINT_MAX : m < 1 ? 1 : (unsigned)m;
	} else if (o->max_connections > lim) {
		kw_warn("--max-connections %u is above the descriptor limit %lu: past it, new "
		        "connections evict handshaking ones or are refused",
		        o->max_connections, lim);
	}
	kw_info("accepting at most %u connections", o->max_connections);
}

/*
 * serve_metrics starts --metrics in the main loop, if asked for, and writes
 * the address really listened on into bound (the kernel's port for port 0).
 */
static int serve_metrics(struct kwd_server *srv, struct kw_loop *loop, const char *where,
                         char *bound, size_t boundlen)
{
	struct kw_addr maddr;
	char why[256], err[1536];
	if (where == NULL)
		return 0;
	if (kw_addr_parse(&maddr, where, why, sizeof(why)) < 0 || maddr.is_unix) {
		kw_error("--metrics %s: %s; fix: use ADDR:PORT, e.g. 127.0.0.1:2406", where,
		         maddr.is_unix ? "a TCP address is needed" : why);
		return -KW_ECONFIG;
	}
	int rc = kwd_metrics_serve(srv->metrics, loop, &maddr, err, sizeof(err));
	if (rc < 0)
		kw_error("%s", err);
	else
		kw_addr_format(&maddr, bound, boundlen);
	return rc;
}

/*
 * run brings the server up and serves until SIGTERM/SIGINT has drained it;
 * returns the exit status: 0 after a clean stop, 2 for a start-up error, 1
 * for a failure later on.
 */
static int run(struct kwd_server *srv, struct kwd_options *o, const sigset_t *set)
{
	char err[1536], metrics_at[300] = "";
	struct kw_loop *loop = NULL;
	struct main_ctx mc = {.srv = srv, .sfd = -1};
	int status = 2, rc;

	kw_io_init(&mc.sig_io, on_signal, &mc);
	if (check_options(o, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		return 2;
	}
	raise_nofile(o);
	if ((rc = kw_loop_new(&loop)) < 0) {
		kw_error("cannot create the event loop: %s", kw_strerror(rc));
		return 2;
	}
	if (watch_signals(&mc, loop, set) < 0)
		goto out;
	if (kwd_server_init(srv, o, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		goto out_srv;
	}
	if (serve_metrics(srv, loop, o->metrics, metrics_at, sizeof(metrics_at)) < 0)
		goto out_srv;
	if ((rc = kwd_server_start_audit(srv, loop)) < 0) {
		kw_error("--audit-log: cannot arm its timer: %s", kw_strerror(rc));
		goto out_srv;
	}
	if (kwd_server_start(srv, err, sizeof(err)) < 0 ||
	    kwd_server_write_pid(srv, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		goto out_srv;
	}
	log_started(srv, metrics_at);

	status = 1;
	if ((rc = kw_loop_run(loop)) < 0) {
		kw_error("main event loop failed: %s", kw_strerror(rc));
		goto out_srv;
	}
	kwd_server_join(srv);
	kw_info("stopped");
	status = 0;
out_srv:
	kwd_server_cleanup(srv);
out:
	kw_io_stop(loop, &mc.sig_io);
	kw_loop_free(loop);
	if (mc.sfd >= 0)
		close(mc.sfd);
	return status;
}

int main(int argc, char **argv)
{
	struct kwd_options o = {
	    .idle_timeout_s = 30,
	    .drain_timeout_s = 5,
	    .max_inflight = 1024,
	    .handshake_timeout = "5s",
	    .log_level = KW_LOG_INFO,
	};
	/* clang-format off */
	struct kw_option opts[] = {
	    KW_OPT_STR("keys", &o.keys_dir, "DIR", "serve every *.key file under DIR (recursively); optional with --pkcs11"),
	    KW_OPT_MANY("pkcs11", &o.pkcs11, "URI", "serve the private keys a PKCS#11 URI (RFC 7512) selects on a token; repeatable; PIN from pin-value or pin-source", .whole = true),
	    KW_OPT_STR("pkcs11-module", &o.pkcs11_module, "PATH", "PKCS#11 module of --pkcs11 URIs without module-path"),
	    KW_OPT_NUM("pkcs11-threads", &o.pkcs11_threads, "N", "threads running token operations, each with its own session (default: online cores)", 1, 1024),
	    KW_OPT_STR("listen", &o.listen, "ADDR:PORT", "TCP listener, mutual TLS (needs --tls-cert, --tls-key, --client-ca)"),
	    KW_OPT_STR("tls-cert", &o.tls_cert, "FILE", "server certificate chain, PEM"),
	    KW_OPT_STR("tls-key", &o.tls_key, "FILE", "server private key, PEM (mode 0600)"),
	    KW_OPT_STR("client-ca", &o.client_ca, "FILE", "CA certificates client certificates must chain to, PEM"),
	    KW_OPT_STR("client-crl", &o.client_crl, "FILE", "PEM CRLs, one for every CA in --client-ca: revoked client certificates are refused (reloaded on SIGHUP)"),
	    KW_OPT_STR("acl", &o.acl, "FILE", "per-client key rules, `allow CLIENT KEYS [OPS]` a line (reloaded on SIGHUP; default: all allowed)"),
	    KW_OPT_STR("audit-log", &o.audit_log, "FILE", "every 10 s, a line per client, key and operation with its requests, denials and failures (- for stdout)"),
	    KW_OPT_STR("unix", &o.unix_path, "PATH", "Unix socket listener, no TLS"),
	    KW_OPT_STR("unix-mode", &o.unix_mode, "MODE", "permissions of the Unix socket, octal (default 0660)"),
	    KW_OPT_FLAG("allow-world-socket", &o.allow_world_socket, "accept a --unix-mode that lets every local user connect (o+w)"),
	    KW_OPT_STR("unix-group", &o.unix_group, "GROUP", "group of the Unix socket (name or number)"),
	    KW_OPT_NUM("workers", &o.workers, "N", "worker threads (default: online cores)", 1, 1024),
	    KW_OPT_STR("metrics", &o.metrics, "ADDR:PORT", "serve Prometheus metrics at http://ADDR:PORT/metrics"),
	    KW_OPT_STR("pid-file", &o.pid_file, "FILE", "write the process id here once listening; removed on exit"),
	    KW_OPT_FLAG("allow-group-readable-keys", &o.allow_group_readable, "accept key files (and --tls-key) readable by group or others"),
	    KW_OPT_NUM("idle-timeout", &o.idle_timeout_s, "SECONDS", "close connections without a request this long (default 30)", 1, 86400),
	    KW_OPT_NUM("drain-timeout", &o.drain_timeout_s, "SECONDS", "on SIGTERM, wait at most this long for in-flight requests (default 5)", 0, 3600),
	    KW_OPT_NUM("max-inflight", &o.max_inflight, "N", "requests in flight per connection before it stops being read (default 1024)", 1, 65536),
	    KW_OPT_NUM("max-connections", &o.max_connections, "N", "open connections per process; at the cap a new one evicts the oldest still in its TLS handshake, else is closed (default: descriptor limit - 32 - 4 per worker)", 1, 0),
	    KW_OPT_STR("handshake-timeout", &o.handshake_timeout, "DURATION", "close a TCP connection whose TLS handshake is not done this long after accept (default 5s)"),
	    KW_OPT_CHOICE("log-level", &o.log_level, "LEVEL", "debug|info|warn|error (default info)", log_levels),
	    KW_OPT_END,
	};
	/* clang-format on */
	struct kwd_server srv;

	/* Before any thread exists: workers inherit this mask, signals go to the signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	char err[1536];
	int rc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, sizeof(err));
	if (rc == 0)
		rc = check_addresses(opts, &o, err, sizeof(err));
	int status = rc == 1 ? 0 : 2; /* 1: --help was printed */
	if (rc < 0)
		fprintf(stderr, "keywayd: %s\n", err);
	if (rc == 0) {
		kw_log_init("keywayd", (enum kw_log_level)o.log_level);
		status = run(&srv, &o, &set);
	}
	kw_config_free(opts);
	return status;
}
