/*
 * server.h - keywayd's shared state: options, listeners, the current
 * generation (keystore + TLS context, see gen.h) and the worker threads.
 * The main thread owns it; workers see only what kwd_worker_config gives.
 */
#ifndef KEYWAYD_SERVER_H
#define KEYWAYD_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "audit.h"
#include "device.h"
#include "gen.h"
#include "keyway/net.h"
#include "metrics.h"

/* Command-line / config-file options (see main.c for the table). */
struct kwd_options {
	char *keys_dir;
	char *listen; /* ADDR:PORT, TCP with mutual TLS */
	char *tls_cert;
	char *tls_key;
	char *client_ca;
	char *client_crl; /* PEM CRLs of every --client-ca CA, NULL: no revocation checks */
	char *acl;        /* --acl rules file, NULL: every client may use every key */
	char *audit_log;  /* --audit-log FILE, or - for standard output */
	char *unix_path;
	char *unix_mode; /* octal text; NULL means 0660 */
	char *unix_group;
	char *metrics; /* ADDR:PORT */
	char *pid_file;
	unsigned workers; /* 0: online cores */
	unsigned idle_timeout_s;
	unsigned drain_timeout_s;
	unsigned max_inflight;
	unsigned max_connections; /* per process; 0 until main sets the default */
	char *handshake_timeout;  /* DURATION text of --handshake-timeout */
	uint64_t handshake_ns;    /* ...parsed by main */
	bool allow_group_readable;
	bool allow_world_socket; /* accept a --unix-mode letting others connect (o+w) */
	int log_level;           /* enum kw_log_level */
	char *pkcs11_module;     /* default PKCS#11 module of --pkcs11 URIs */
	char **pkcs11;           /* --pkcs11 URIs (NULL-terminated), or NULL */
	unsigned pkcs11_threads; /* device threads; 0: online cores */
};

struct kwd_worker;

struct kwd_server {
	const struct kwd_options *opt;
	unsigned nworkers;
	unsigned unix_mode;
	bool has_tcp;
	struct kw_addr tcp_addr; /* with the real port once bound */
	int *tcp_fds;            /* one SO_REUSEPORT listener per worker, or NULL */
	int unix_fd;             /* shared by all workers (EPOLLEXCLUSIVE), -1 if none */
	bool unix_owned;         /* we created unix_path and must unlink it */
	bool pid_written;

	struct kwd_gen_slot gens; /* the current generation; published by this thread only */

	struct kwd_worker **workers;
	struct kwd_metrics *metrics;
	struct kwd_audit *audit;      /* --audit-log, or NULL */
	struct kwd_devpool *devpool;  /* token operations; NULL without --pkcs11 */
	struct kwd_p11_device p11dev; /* the executor's device kind over devpool */
	atomic_uint nconns;           /* open connections of every worker (--max-connections) */
};

/*
 * kwd_server_init loads the first generation and opens every listener
 * (nothing serves yet). On failure err holds one line naming the file or
 * address and the fix; the caller exits 2. kwd_server_cleanup undoes it all.
 */
int kwd_server_init(struct kwd_server *s, const struct kwd_options *opt, char *err, size_t errlen);
/* kwd_server_start_audit arms the --audit-log writer in the main loop; 0 or -errno. */
int kwd_server_start_audit(struct kwd_server *s, struct kw_loop *loop);
/* kwd_server_start starts the worker threads; 0 or -errno. */
int kwd_server_start(struct kwd_server *s, char *err, size_t errlen);
/* kwd_server_write_pid writes --pid-file (atomically, by rename); 0 or -errno. */
int kwd_server_write_pid(struct kwd_server *s, char *err, size_t errlen);

/*
 * kwd_server_reload builds a new generation from the same options and
 * publishes it; on failure the current one stays and the reason is logged.
 * Main thread only. Returns 0 or a negative code.
 */
int kwd_server_reload(struct kwd_server *s);

/* kwd_server_drain removes the Unix socket path and asks every worker to stop
 * accepting and drain (main thread). */
void kwd_server_drain(struct kwd_server *s);
/* kwd_server_join waits for the workers to finish. */
void kwd_server_join(struct kwd_server *s);
/* kwd_server_cleanup closes listeners, unlinks the socket and pid file, frees all. */
void kwd_server_cleanup(struct kwd_server *s);

#endif
