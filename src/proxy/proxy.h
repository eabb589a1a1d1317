/*
 * proxy.h - keyway-proxy's shared types: the options, the worker and the
 * connection with its mode table. Functions live in each module's header.
 *
 * Threads: each worker owns a kw_loop, a SO_REUSEPORT listener, its
 * connections, an ASYNC job pool and an offload backend; nothing on the hot
 * path is shared. The main thread handles signals and serves /metrics,
 * reading the workers' counters with relaxed loads (single writer each).
 */
#ifndef KPX_PROXY_H
#define KPX_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/offload.h"
#include "keyway/list.h"
#include "poller.h"
#include "stats.h"
#include "waitq.h"

/* ---- options (main.c parses them) ---- */

/* --backend and --notify; values are the options' choice indices. */
enum kpx_backend_kind { KPX_BACKEND_INLINE, KPX_BACKEND_THREADS, KPX_BACKEND_KEYLESS };
enum kpx_notify { KPX_NOTIFY_CALLBACK, KPX_NOTIFY_FD };
/* --quic-crypto: Keyway's engine (quic_tx.c) or ngtcp2's own GnuTLS callbacks. */
enum kpx_quic_crypto { KPX_QUIC_CRYPTO_ENGINE, KPX_QUIC_CRYPTO_GNUTLS };
/* --quic-retry: Retry every client Initial, none, or under load (quic_listen.c). */
enum kpx_quic_retry { KPX_QUIC_RETRY_AUTO, KPX_QUIC_RETRY_ON, KPX_QUIC_RETRY_OFF };

/* Keyserver settings handed to the built-in provider (keys.c); NULL/0: not given. */
struct kpx_keyless_opts {
	char *servers, *client_cert, *client_key, *ca, *server_name, *fallback_keys;
	unsigned timeout_ms, attempt_timeout_ms, connections, max_inflight;
};

struct kpx_options {
	char *listen, *metrics, *log_level;
	char **certs, **keys; /* --cert/--key pairs; the first is the default certificate */
	char **alpn;          /* ALPN protocols offered */
	bool keys_remote;     /* some --key is held by keyservers (set by the option check) */
	bool allow_group_readable_keys; /* accept private-key files readable by group or others */
	bool require_keys; /* --require-keys: refuse a certificate no keyserver holds the key of */
	bool respond;
	struct kpx_keyless_opts keyless;
	OSSL_PROVIDER *provider;         /* the built-in keyway, unless --backend inline */
	OSSL_PROVIDER *default_provider; /* loaded with it */
	unsigned workers;
	enum kpx_backend_kind backend;
	bool async; /* --async: pause handshakes on offloaded operations */
	enum kpx_notify notify;
	enum kpx_poll poll;
	bool resumption; /* --resumption: session tickets and cache */
	unsigned poll_interval_us, poll_threshold, crypto_threads, ring_size;
	/* --rsa-batch: local RSA keys' ops may run in multi-buffer batches on crypto threads */
	bool rsa_batch, rsa_batch_given;
	unsigned keepalive_timeout_s, handshake_timeout_s, async_jobs;
	char *body;
	/* TLS termination (upstream.c, accesslog.c): upstream, limits, access log */
	char *upstream;               /* --upstream HOST:PORT, instead of --respond */
	struct kw_addr upstream_addr; /* parsed at start-up */
	bool send_proxy_v2;
	unsigned connect_timeout_s, idle_timeout_s, drain_timeout_s;
	unsigned max_connections, max_handshake_bytes; /* 0: no limit */
	char *access_log;
	int access_fd; /* where access lines go: 2 (stderr) or the --access-log file */
	/* HTTP/3 (quic_listen.c, quic_conn.c) */
	char *quic_listen;        /* --quic-listen ADDR:PORT, NULL: no QUIC */
	struct kw_addr quic_addr; /* parsed at start-up */
	unsigned quic_idle_timeout_s;
	unsigned quic_handshake_threads;  /* keyserver-held keys: handshake steps off the loops */
	enum kpx_quic_crypto quic_crypto; /* who protects 1-RTT packets sent */
	enum kpx_quic_retry quic_retry;
	char *quic_engine; /* --quic-engine: evp, ipsec-mb or auto */
	int quic_sched;    /* --quic-sched: enum kw_quic_sched (inline: no crypto threads) */
	unsigned quic_crypto_threads; /* --quic-crypto-threads: the pool's threads per worker */
	char alt_svc[64]; /* "Alt-Svc: h3=\":PORT\"; ma=86400\r\n" with --quic-listen, else "" */
};

/* ---- the worker (worker.c) ---- */

struct kpx_tls; /* tlsctx.c: a certificate set */
struct kpx_qep; /* quic_listen.c: the worker's QUIC endpoint */

struct kpx_worker {
	unsigned id;
	const struct kpx_options *opt;
	struct kpx_tls *tls; /* the certificate set new connections get (tlsctx.c) */
	uint64_t tls_gen;
	pthread_t tid;
	bool started;
	struct kw_loop *loop;
	int lfd;
	struct kw_io lio;
	struct kw_backend *backend;
	struct kw_list conns; /* every connection */
	struct kpx_waitq waitq;
	struct kpx_poller poller;
	unsigned nconns, active, idle;
	_Atomic bool stop;
	struct kpx_wmetrics m;
	struct kw_timer accept_pause; /* out of descriptors: accept again later */
	bool accept_lost;             /* neither the pause timer nor the listener could be armed */
	int qfd;                      /* --quic-listen: the UDP socket until the endpoint starts */
	struct kpx_qep *quic;         /* --quic-listen: the endpoint (NULL: none) */
};

/* ---- the connection (conn.c) and its mode (respond.c, upstream.c) ---- */

/*
 * One convention for a connection's I/O steps: what a step did to the
 * connection. DONE: it ran to its end and the connection goes on; BLOCKED:
 * it waits for the socket (or memory); CLOSED: the connection was closed
 * (it must not be touched again before returning to the loop).
 */
enum kpx_step { KPX_STEP_DONE, KPX_STEP_BLOCKED, KPX_STEP_CLOSED };

struct kpx_conn;

/*
 * What a connection does once its handshake is done, in the spirit of
 * HAProxy's xprt_ops: the worker hands one table to each connection at
 * accept, so conn.c names no mode. A mode sees plaintext byte streams
 * (kpx_conn_recv/send/shutdown in conn.h), never the SSL.
 */
struct kpx_mode_ops {
	/* start takes over after the handshake (state KPX_CS_MODE); it may close c. */
	void (*start)(struct kpx_conn *c);
	/* io handles readiness (events: KW_EV_*) of the client's socket; it may close c. */
	void (*io)(struct kpx_conn *c, unsigned events);
	/* timeout: the connection's timer fired; it may close c. */
	void (*timeout)(struct kpx_conn *c);
	/* free releases the mode's state (kpx_conn_close calls it once, NULL-safe state). */
	void (*free)(struct kpx_conn *c);
};

enum kpx_cstate {
	KPX_CS_HANDSHAKE, /* TLS handshake in progress, waiting for the socket */
	KPX_CS_ASYNC,     /* TLS-ASYNC: the handshake's job is paused on an offload op */
	KPX_CS_MODE,      /* handshake done: the mode (respond or upstream) runs it */
	KPX_CS_CLOSED,
};

#define KPX_CONN_MAGIC 0x6b707863u /* "kpxc" */
#define KPX_MAX_ASYNC_FDS 4

struct kpx_conn {
	uint32_t magic;
	struct kpx_worker *w;
	struct kw_list node;      /* in w->conns */
	struct kpx_waiter waiter; /* in w->waitq */
	enum kpx_cstate state;
	const struct kpx_mode_ops *mode;
	void *mode_state; /* the mode's own, NULL before start */
	int fd;
	struct kw_io io;
	struct kw_timer timer; /* handshake timeout, then the mode's */
	SSL *ssl;
	bool counted_active, counted_idle; /* idle: kept alive, waiting for a request */
	bool closing;                      /* close as soon as the paused job has finished */
	bool async_mode;                   /* SSL_MODE_ASYNC is set (handshake only) */
	int async_fds[KPX_MAX_ASYNC_FDS];  /* fd mode: the provider's wait fds */
	struct kw_io async_io[KPX_MAX_ASYNC_FDS];
	/* access log fields */
	struct sockaddr_storage peer;         /* the client */
	uint64_t accept_ns, handshake_ns;     /* when accepted; handshake duration (0: none) */
	enum kpx_reason reason;               /* set by the first cause */
	char missing_ski[2 * KW_SKI_LEN + 1]; /* a handshake failed on this key: not found */
	bool holds_slot;                      /* counted against --max-connections */
	uint64_t rx_client, tx_client, rx_upstream, tx_upstream; /* plaintext bytes */
};

#endif
