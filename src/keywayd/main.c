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
#include "server.h"

static const char usage[] =
    "usage: keywayd --keys DIR --listen ADDR:PORT --tls-cert FILE --tls-key FILE --client-ca FILE\n"
    "               [--unix PATH] [--workers N] [--metrics ADDR:PORT] [--config FILE]\n"
    "               [--pid-file FILE] [options]\n"
    "A keyless keyserver: signs and decrypts with the keys in DIR for keyless clients\n"
    "over mutual TLS (--listen) and/or a Unix socket (--unix). SIGHUP reloads the keys\n"
    "and TLS files; SIGTERM drains and exits.";

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};

struct main_ctx {
	struct kwd_server *srv;
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
	} else if (o->tls_cert || o->tls_key || o->client_ca) {
		kw_warn("--tls-cert/--tls-key/--client-ca are unused without --listen");
	}
	if (o->workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->workers = n > 0 ? (unsigned)(n > 1024 ? 1024 : n) : 1;
	}
	return 0;
}

static void log_started(const struct kwd_server *s)
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
	if (s->opt->metrics != NULL && used < sizeof(where))
		snprintf(where + used, sizeof(where) - used, "; metrics on http://%s/metrics",
		         s->opt->metrics);
	size_t n = kwd_keystore_count(s->gen->ks);
	kw_info("keywayd started: %zu key%s from %s, %u worker%s, listening on %s", n,
	        n == 1 ? "" : "s", s->opt->keys_dir, s->nworkers, s->nworkers == 1 ? "" : "s",
	        where);
}

int main(int argc, char **argv)
{
	struct kwd_options o = {
	    .idle_timeout_s = 30,
	    .drain_timeout_s = 5,
	    .max_inflight = 1024,
	    .log_level = KW_LOG_INFO,
	};
	struct kw_option opts[] = {
	    {.name = "keys",
	     .type = KW_OPT_STRING,
	     .dest = &o.keys_dir,
	     .arg = "DIR",
	     .help = "serve every *.key file under DIR (recursively)",
	     .required = true},
	    {.name = "listen",
	     .type = KW_OPT_STRING,
	     .dest = &o.listen,
	     .arg = "ADDR:PORT",
	     .help = "TCP listener, mutual TLS (needs --tls-cert, --tls-key, --client-ca)"},
	    {.name = "tls-cert",
	     .type = KW_OPT_STRING,
	     .dest = &o.tls_cert,
	     .arg = "FILE",
	     .help = "server certificate chain, PEM"},
	    {.name = "tls-key",
	     .type = KW_OPT_STRING,
	     .dest = &o.tls_key,
	     .arg = "FILE",
	     .help = "server private key, PEM (mode 0600)"},
	    {.name = "client-ca",
	     .type = KW_OPT_STRING,
	     .dest = &o.client_ca,
	     .arg = "FILE",
	     .help = "CA certificates client certificates must chain to, PEM"},
	    {.name = "unix",
	     .type = KW_OPT_STRING,
	     .dest = &o.unix_path,
	     .arg = "PATH",
	     .help = "Unix socket listener, no TLS"},
	    {.name = "unix-mode",
	     .type = KW_OPT_STRING,
	     .dest = &o.unix_mode,
	     .arg = "MODE",
	     .help = "permissions of the Unix socket, octal (default 0660)"},
	    {.name = "unix-group",
	     .type = KW_OPT_STRING,
	     .dest = &o.unix_group,
	     .arg = "GROUP",
	     .help = "group of the Unix socket (name or number)"},
	    {.name = "workers",
	     .type = KW_OPT_UINT,
	     .dest = &o.workers,
	     .arg = "N",
	     .help = "worker threads (default: online cores)",
	     .min = 1,
	     .max = 1024},
	    {.name = "metrics",
	     .type = KW_OPT_STRING,
	     .dest = &o.metrics,
	     .arg = "ADDR:PORT",
	     .help = "serve Prometheus metrics at http://ADDR:PORT/metrics"},
	    {.name = "pid-file",
	     .type = KW_OPT_STRING,
	     .dest = &o.pid_file,
	     .arg = "FILE",
	     .help = "write the process id here once listening; removed on exit"},
	    {.name = "allow-group-readable-keys",
	     .type = KW_OPT_BOOL,
	     .dest = &o.allow_group_readable,
	     .help = "accept key files (and --tls-key) readable by group or others"},
	    {.name = "idle-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.idle_timeout_s,
	     .arg = "SECONDS",
	     .help = "close connections without a request this long (default 30)",
	     .min = 1,
	     .max = 86400},
	    {.name = "drain-timeout",
	     .type = KW_OPT_UINT,
	     .dest = &o.drain_timeout_s,
	     .arg = "SECONDS",
	     .help = "on SIGTERM, wait at most this long for in-flight requests "
	             "(default 5)",
	     .min = 0,
	     .max = 3600},
	    {.name = "max-inflight",
	     .type = KW_OPT_UINT,
	     .dest = &o.max_inflight,
	     .arg = "N",
	     .help = "requests in flight per connection before it stops being read (default 1024)",
	     .min = 1,
	     .max = 65536},
	    {.name = "log-level",
	     .type = KW_OPT_ENUM,
	     .dest = &o.log_level,
	     .arg = "LEVEL",
	     .help = "debug|info|warn|error (default info)",
	     .choices = log_levels},
	    {.name = NULL},
	};
	char err[1536];
	int status = 2;
	struct kwd_server srv;
	struct kw_loop *loop = NULL;
	struct main_ctx mc = {.srv = &srv};
	bool srv_init = false;
	int sfd = -1;

	/* Before any thread exists: workers inherit this mask, signals go to the signalfd. */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	int rc = kw_config_parse(opts, argc, argv, usage, NULL, NULL, err, sizeof(err));
	if (rc == 1) {
		kw_config_free(opts);
		return 0;
	}
	if (rc < 0) {
		fprintf(stderr, "keywayd: %s\n", err);
		kw_config_free(opts);
		return 2;
	}
	kw_log_init("keywayd", (enum kw_log_level)o.log_level);
	if (check_options(&o, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		goto out;
	}
	if ((rc = kw_loop_new(&loop)) < 0) {
		kw_error("cannot create the event loop: %s", kw_strerror(rc));
		goto out;
	}
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	if (sfd < 0) {
		kw_error("signalfd: %s", strerror(errno));
		goto out;
	}
	kw_io_init(&mc.sig_io, on_signal, &mc);
	if ((rc = kw_io_start(loop, &mc.sig_io, sfd, KW_EV_READ)) < 0) {
		kw_error("cannot watch signals: %s", kw_strerror(rc));
		goto out;
	}

	srv_init = true;
	if (kwd_server_init(&srv, &o, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		goto out;
	}
	if (o.metrics != NULL) {
		struct kw_addr maddr;
		char why[256];
		if (kw_addr_parse(&maddr, o.metrics, why, sizeof(why)) < 0 || maddr.is_unix) {
			kw_error("--metrics %s: %s; fix: use ADDR:PORT, e.g. 127.0.0.1:2406",
			         o.metrics, maddr.is_unix ? "a TCP address is needed" : why);
			goto out;
		}
		if (kwd_metrics_serve(srv.metrics, loop, &maddr, err, sizeof(err)) < 0) {
			kw_error("%s", err);
			goto out;
		}
	}
	if (kwd_server_start(&srv, err, sizeof(err)) < 0 ||
	    kwd_server_write_pid(&srv, err, sizeof(err)) < 0) {
		kw_error("%s", err);
		goto out;
	}
	log_started(&srv);

	status = 1;
	if ((rc = kw_loop_run(loop)) < 0) {
		kw_error("main event loop failed: %s", kw_strerror(rc));
		goto out;
	}
	kwd_server_join(&srv);
	kw_info("stopped");
	status = 0;
out:
	if (srv_init)
		kwd_server_cleanup(&srv);
	if (loop != NULL) {
		kw_io_stop(loop, &mc.sig_io);
		kw_loop_free(loop);
	}
	if (sfd >= 0)
		close(sfd);
	kw_config_free(opts);
	return status;
}
