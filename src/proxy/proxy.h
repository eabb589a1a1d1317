/*
 * proxy.h - keyway-proxy's shared types: options, the worker, the
 * connection, and the per-worker metrics block.
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

#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "keyway/buf.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/offload.h"

enum kpx_backend_kind { KPX_BACKEND_INLINE, KPX_BACKEND_THREADS, KPX_BACKEND_KEYLESS };
enum kpx_notify { KPX_NOTIFY_CALLBACK, KPX_NOTIFY_FD };
enum kpx_poll { KPX_POLL_HEURISTIC, KPX_POLL_TIMER, KPX_POLL_BUSY };

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
	bool respond;
	struct kpx_keyless_opts keyless;
	OSSL_PROVIDER *provider;         /* the built-in keyway, unless --backend inline */
	OSSL_PROVIDER *default_provider; /* loaded with it */
	unsigned workers;
	int backend; /* enum kpx_backend_kind */
	bool backend_given;
	int async_off; /* choice index: 0 = on, 1 = off */
	int notify;    /* enum kpx_notify */
	int poll;      /* enum kpx_poll */
	int resumption_off;
	unsigned poll_interval_us, poll_threshold, crypto_threads, ring_size;
	unsigned keepalive_timeout_s, handshake_timeout_s, async_jobs;
	char *body;
	/* TLS termination (relay.c, alog.c): upstream relay, limits, access log */
	char *upstream;               /* --upstream HOST:PORT, instead of --respond */
	struct kw_addr upstream_addr; /* parsed at start-up */
	bool send_proxy_v2;
	unsigned connect_timeout_s, idle_timeout_s, drain_timeout_s;
	unsigned max_connections, max_handshake_bytes; /* 0: no limit */
	char *access_log;
	int access_fd; /* where access lines go: 2 (stderr) or the --access-log file */
};

/* Why a connection ended badly (handshake_failures_total{reason}). */
enum kpx_fail {
	KPX_FAIL_TLS,      /* TLS alert or protocol error */
	KPX_FAIL_CLOSED,   /* the client closed or reset before finishing */
	KPX_FAIL_TIMEOUT,  /* handshake not done within --handshake-timeout */
	KPX_FAIL_INTERNAL, /* out of memory, offload error */
	KPX_NFAIL
};

/* What made the worker reap completions (polls_total{trigger}). */
enum kpx_trigger {
	KPX_TRIG_THRESHOLD,  /* in-flight ops reached --poll-threshold */
	KPX_TRIG_TIMELINESS, /* in-flight ops >= active connections */
	KPX_TRIG_TIMER,      /* heuristic failover timer, or --poll timer */
	KPX_TRIG_WAKEUP,     /* the armed eventfd woke a sleeping worker */
	KPX_TRIG_BUSY,       /* --poll busy, every loop turn */
	KPX_NTRIG
};

/* Why a connection closed: the access log's reason= and closes_total{reason}. */
enum kpx_reason {
	KPX_R_NONE,
	KPX_R_DONE,                    /* finished normally */
	KPX_R_CLIENT_CLOSE,            /* the client closed, reset or failed first */
	KPX_R_UPSTREAM_CLOSE,          /* the upstream reset or failed */
	KPX_R_UPSTREAM_CONNECT_FAILED, /* connecting to the upstream failed */
	KPX_R_UPSTREAM_TIMEOUT,        /* connecting took longer than --connect-timeout */
	KPX_R_IDLE_TIMEOUT,            /* no traffic for --idle-timeout (or keep-alive timeout) */
	KPX_R_HANDSHAKE_TIMEOUT,       /* no handshake within --handshake-timeout */
	KPX_R_HANDSHAKE_FAILED,        /* TLS error during the handshake */
	KPX_R_TOO_MANY_BYTES,          /* over --max-handshake-bytes before the handshake ended */
	KPX_R_MAX_CONNECTIONS,         /* refused: --max-connections reached */
	KPX_R_DRAIN,                   /* still open at the end of --drain-timeout */
	KPX_R_TLS_ERROR,               /* bad TLS record after the handshake */
	KPX_R_HTTP_ERROR,              /* --respond: malformed request */
	KPX_R_REQUEST_TIMEOUT,         /* --respond: a request not read in time */
	KPX_R_INTERNAL,                /* out of memory or descriptors */
	KPX_NREASON
};
extern const char *const kpx_reason_names[KPX_NREASON];

struct kpx_wmetrics {
	_Atomic uint64_t accepted, handshakes, failures[KPX_NFAIL];
	_Atomic uint64_t requests, http_errors, closed;
	_Atomic uint64_t active, idle;           /* gauges */
	_Atomic uint64_t inflight[KW_OPK_COUNT]; /* gauges, refreshed every loop turn */
	_Atomic uint64_t polls[KPX_NTRIG], polled_ops;
	_Atomic uint64_t async_pauses; /* SSL_ERROR_WANT_ASYNC */
	_Atomic uint64_t async_queue_wakeups, async_fd_wakeups;
	_Atomic uint64_t job_waits;      /* SSL_ERROR_WANT_ASYNC_JOB */
	_Atomic uint64_t capacity_waits; /* paused with ASYNC_STATUS_EAGAIN */
	/* termination */
	_Atomic uint64_t closes[KPX_NREASON];  /* by close reason */
	_Atomic uint64_t relay_bytes[2];       /* 0: client->upstream, 1: upstream->client */
	_Atomic uint64_t upstream_connects[3]; /* 0: ok, 1: failed, 2: timeout */
	_Atomic uint64_t relays;               /* gauge: connections relaying */
};

/* Single-writer counter update: the owning worker is the only one storing. */
static inline void kpx_add(_Atomic uint64_t *c, uint64_t n)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
	                      memory_order_relaxed);
}
static inline void kpx_set(_Atomic uint64_t *c, uint64_t v)
{
	atomic_store_explicit(c, v, memory_order_relaxed);
}

/* A circular doubly-linked list node; a lone node points to itself. */
struct kpx_list {
	struct kpx_list *prev, *next;
};

static inline void kpx_list_init(struct kpx_list *l)
{
	l->prev = l->next = l;
}
static inline bool kpx_list_empty(const struct kpx_list *l)
{
	return l->next == l;
}
static inline void kpx_list_add_tail(struct kpx_list *head, struct kpx_list *n)
{
	n->prev = head->prev;
	n->next = head;
	head->prev->next = n;
	head->prev = n;
}
static inline void kpx_list_del(struct kpx_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	kpx_list_init(n);
}

struct kpx_proxy; /* main.c: options, SSL_CTX, workers */
struct kpx_tls;   /* tlsctx.c: a certificate set */

/* Which wait list a connection is on (at most one). */
enum kpx_wait { KPX_WAIT_NONE, KPX_WAIT_ASYNCQ, KPX_WAIT_JOB, KPX_WAIT_CAPACITY };

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
	bool ring_backend;         /* the backend is polled by the loop (threads) */
	struct kw_io wake_io;      /* the backend's wake eventfd */
	struct kpx_list conns;     /* every connection */
	struct kpx_list asyncq;    /* ops completed: resume these (callback mode's queue) */
	struct kpx_list job_wait;  /* SSL_ERROR_WANT_ASYNC_JOB: retry when a job frees */
	struct kpx_list cap_wait;  /* backend was full: retry after the next completion */
	pthread_mutex_t remote_mu; /* guards remote_q: completions signalled from other threads */
	struct kpx_list remote_q;
	_Atomic bool remote_pending; /* remote_q may be non-empty: lets the loop skip the lock */
	unsigned nconns, active, idle;
	/* polling */
	struct kw_timer failover; /* heuristic: 1 ms safety net */
	unsigned heuristic_polls; /* heuristic polls since the failover timer was armed */
	int timerfd;              /* --poll timer */
	struct kw_io timer_io;
	bool timer_running;
	bool armed; /* the backend's eventfd is armed for this sleep */
	_Atomic bool stop;
	struct kpx_wmetrics m;
	struct kw_timer accept_pause; /* out of descriptors: accept again later */
};

enum kpx_cstate {
	KPX_CS_HANDSHAKE, /* TLS handshake in progress, waiting for the socket */
	KPX_CS_ASYNC,     /* TLS-ASYNC: the handshake's job is paused on an offload op */
	KPX_CS_HTTP,      /* reading a request or writing a response */
	KPX_CS_IDLE,      /* keep-alive, nothing buffered */
	KPX_CS_CLOSED,
	KPX_CS_RELAY, /* --upstream: connecting to it, then relaying both ways */
};

#define KPX_CONN_MAGIC 0x6b707863u /* "kpxc" */
#define KPX_MAX_ASYNC_FDS 4

struct kpx_conn {
	uint32_t magic;
	struct kpx_worker *w;
	struct kpx_list node; /* in w->conns */
	struct kpx_list wait; /* in one of the worker's wait lists */
	enum kpx_wait waiting;
	struct kpx_list rnode; /* in w->remote_q (under remote_mu) */
	bool rqueued;          /* on w->remote_q (under remote_mu) */
	enum kpx_cstate state;
	int fd;
	struct kw_io io;
	struct kw_timer timer; /* handshake, request or keep-alive timeout */
	SSL *ssl;
	unsigned parked; /* socket events swallowed while in TLS-ASYNC */
	bool counted_active, counted_idle;
	bool closing; /* close as soon as the paused job has finished */
	bool close_after_write;
	bool async_mode; /* SSL_MODE_ASYNC is set (handshake only) */
	uint64_t nreq;   /* requests answered */
	struct kw_buf in, out;
	int async_fds[KPX_MAX_ASYNC_FDS]; /* fd mode: the provider's wait fds */
	struct kw_io async_io[KPX_MAX_ASYNC_FDS];
	/* termination: access log fields and the relay */
	struct sockaddr_storage peer;     /* the client */
	uint64_t accept_ns, handshake_ns; /* when accepted; handshake duration (0: none) */
	int reason;                       /* enum kpx_reason, set by the first cause */
	bool holds_slot;                  /* counted against --max-connections */
	uint64_t rx_client, tx_client, rx_upstream, tx_upstream; /* plaintext bytes */
	struct kpx_relay *relay;                                 /* NULL unless relaying */
};

/* ---- conn.c ---- */
void kpx_conn_accept(struct kpx_worker *w, int fd);
/* kpx_conn_accept_from: the same, with the client's address (for logs and PROXY v2), for a
 * caller that has taken a --max-connections slot (kpx_conn_take_slot). */
void kpx_conn_accept_from(struct kpx_worker *w, int fd, const struct sockaddr *peer,
                          socklen_t peer_len);
/* kpx_conn_close_why records reason (the first one given wins) and closes. */
void kpx_conn_close_why(struct kpx_conn *c, enum kpx_reason reason);
/* kpx_conn_refuse answers a connection over --max-connections: counted, logged, closed. */
void kpx_conn_refuse(struct kpx_worker *w, int fd, const struct sockaddr *peer);
/* kpx_conn_slots: connections holding a --max-connections slot, process-wide. */
unsigned kpx_conn_slots(void);
bool kpx_conn_take_slot(unsigned max);
void kpx_conn_drop_slot(void);

/* ---- relay.c (--upstream) ---- */
struct kpx_relay;
/* kpx_relay_start begins connecting to the upstream after the handshake. */
void kpx_relay_start(struct kpx_conn *c);
/* kpx_relay_client_io handles readiness of the client's socket while relaying. */
void kpx_relay_client_io(struct kpx_conn *c, unsigned events);
/* kpx_relay_timeout: the connection's timer fired while relaying. */
void kpx_relay_timeout(struct kpx_conn *c);
/* kpx_relay_free closes the upstream side (kpx_conn_close calls it). */
void kpx_relay_free(struct kpx_conn *c);

/* ---- alog.c: one access line per connection ---- */
void kpx_alog_conn(struct kpx_conn *c);
void kpx_alog_refused(struct kpx_worker *w, const struct sockaddr *peer);
/* kpx_alog_open sets o->access_fd from --access-log (FILE, - for stderr, off); 0 or -errno. */
int kpx_alog_open(struct kpx_options *o, char *err, size_t errlen);
/* kpx_alog_reopen reopens the --access-log file in place (after log rotation); 0 or -errno. */
int kpx_alog_reopen(const struct kpx_options *o);
void kpx_alog_close(struct kpx_options *o);

/* ---- term.c ---- */
/* kpx_term_check: exactly one mode, the upstream address, the access log; 0 or -KW_ECONFIG. */
int kpx_term_check(struct kpx_options *o, char *err, size_t errlen);
/* kpx_conn_resume re-calls the paused handshake after its op completed (or a retry is due). */
void kpx_conn_resume(struct kpx_conn *c);
/* kpx_conn_close closes now, or as soon as a paused job has finished. */
void kpx_conn_close(struct kpx_conn *c);
/* kpx_conn_async_cb is the SSL_CTX async callback (callback mode). */
int kpx_conn_async_cb(SSL *ssl, void *arg);

/* ---- worker.c ---- */
int kpx_worker_init(struct kpx_worker *w, unsigned id, const struct kpx_options *opt, int lfd);
/* kpx_worker_ssl_new makes a new connection's SSL from the current certificate set. */
SSL *kpx_worker_ssl_new(struct kpx_worker *w);
int kpx_worker_start(struct kpx_worker *w);
void kpx_worker_stop(struct kpx_worker *w);
void kpx_worker_join(struct kpx_worker *w);
void kpx_worker_cleanup(struct kpx_worker *w);
/* kpx_worker_current is the worker running on this thread, or NULL. */
struct kpx_worker *kpx_worker_current(void);
/* kpx_wait_on puts c on a wait list of its worker (taking it off any other). */
void kpx_wait_on(struct kpx_conn *c, enum kpx_wait which);
void kpx_wait_off(struct kpx_conn *c);
/* kpx_job_freed: a job went back to this thread's pool; retry one WANT_ASYNC_JOB waiter. */
void kpx_job_freed(struct kpx_worker *w);
/* Activity accounting for the heuristic (idle keep-alive connections are not active). */
void kpx_set_active(struct kpx_conn *c, bool active);
void kpx_set_idle(struct kpx_conn *c, bool idle);

/* ---- poller.c ---- */
int kpx_poller_init(struct kpx_worker *w);
void kpx_poller_cleanup(struct kpx_worker *w);
/* kpx_poller_check is the QTLS heuristic, run after an op was submitted and when a connection goes
 * idle or closes. */
void kpx_poller_check(struct kpx_worker *w);
/* kpx_poller_before_sleep returns the loop timeout (ms, -1 forever) and arms the wake-up. */
int kpx_poller_before_sleep(struct kpx_worker *w);
void kpx_poller_after_wake(struct kpx_worker *w);
/* kpx_poll_now reaps completions; returns how many. */
int kpx_poll_now(struct kpx_worker *w, enum kpx_trigger why);

#endif
