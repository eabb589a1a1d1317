/*
 * conn.c - one keyless client connection (see conn.h).
 *
 * Data path: the socket is read in large chunks into rx. With TLS, OpenSSL
 * reads its records from rx and writes its records into tx through a small
 * buffer BIO, so the SSL object never touches the socket: one recv fills rx
 * with many records and one send writes every record of a batch. Decrypted
 * requests land in `in`; their responses are encoded (padded to 1024 bytes,
 * as gokeyless does) into `resp`, encrypted by one SSL_write per batch.
 * Without TLS, frames are parsed straight from rx and responses encoded into
 * tx.
 *
 * Steps: each I/O step of the service routine returns an enum kwd_step --
 * done, blocked (waits for the peer or the socket), or closed -- and a step
 * that closes the connection does so itself.
 *
 * Teardown: close_now() releases the socket and SSL at once but the struct
 * itself is freed at the end of the loop turn, so any caller up the stack
 * only has to check c->dead.
 */
#include "conn.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "identity.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/opcodes.h"
#include "keyway/protocol.h"
#include "keyway/tls.h"

#define READ_CHUNK 16384
#define READ_BUDGET (64 * 1024)      /* socket bytes per connection per turn, for fairness */
#define MAX_BUFFERED_IN (256 * 1024) /* unparsed input above which reading waits (> max frame) */
#define EXEC_BUDGET 256              /* requests answered per connection per turn, at most */
/*
 * Execution time one connection may use per loop turn. Requests cost from
 * microseconds (a ping, an ECDSA sign) to several milliseconds (an RSA-4096
 * sign), so a count alone lets one pipelining client hold the worker for a
 * second; past this slice the connection yields to the next turn, after every
 * other ready connection, so a request elsewhere waits for one slice plus the
 * request running when it was used up, not for a whole batch.
 */
#define EXEC_SLICE_NS 2000000u /* 2 ms */
/* Requests of one connection a device or a batch may hold; past it reading waits. */
#define MAX_PENDING_JOBS 1024
/*
 * Reading in step with a device: while a connection has at least
 * HOLD_MIN_JOBS requests waiting on a device (or in an RSA batch), its socket
 * is not watched; what the client sent meanwhile is read when answers come
 * back (the loop is awake for them anyway) or after HOLD_MAX_NS at the latest.
 * Otherwise an idle worker wakes for every request a pipelining client sends,
 * which on a busy token costs more than the request waits: the device has work
 * queued. The bound keeps a ping on that connection answered within a few
 * milliseconds. It is twice the device's burst bound, the longest a busy
 * device's bursts come apart: a shorter bound fires between every two bursts
 * (a bound of 1 ms against 1.3 ms bursts of RSA-2048 signs woke the worker
 * once per request instead of once per burst).
 */
#define HOLD_MIN_JOBS 4
#define HOLD_MAX_NS (2 * KWD_DEVICE_BURST_NS)
#define DRAIN_QUIET_NS 50000000u /* draining: silence after which a client is done */
/* An empty buffer larger than this is given back after each turn: steady traffic
 * keeps its small buffers, and a burst's growth does not stay pinned. */
#define KEEP_BUF_CAP (2 * READ_CHUNK)

/* What an I/O step left behind. */
enum kwd_step {
	KWD_STEP_DONE,    /* its work is done: go on */
	KWD_STEP_BLOCKED, /* it waits for the peer or the socket: what needs its output waits */
	KWD_STEP_CLOSED,  /* it closed the connection: touch nothing but c->dead */
};

/* A request answered in this service turn, for the total-duration histogram. */
struct answered {
	uint8_t family;
	uint8_t err;
};

/* Scratch of one service turn (on the stack: nothing of it outlives the turn). */
struct turn {
	struct kwd_exec_result res;
	struct answered answered[EXEC_BUDGET];
	unsigned nanswered;
};

struct kwd_conn {
	struct kwd_conn_env *env;
	void *owner; /* for env->closed */
	int fd;
	SSL *ssl; /* NULL on the Unix socket */
	enum kwd_transport transport;
	bool handshaking;   /* TLS handshake not finished */
	bool closing;       /* read nothing more: flush tx, then close */
	bool dead;          /* closed; the struct is freed at the end of the turn */
	bool eof;           /* the peer closed its sending side */
	bool paused;        /* backpressure: too much unsent output */
	bool draining;      /* server shutdown: close once answered */
	bool input_drained; /* the last read emptied the socket */
	bool handshake_failed;
	bool holding;              /* reads wait for the device's answers (HOLD_MIN_JOBS) */
	bool secret_out;           /* queued output holds a decrypted block: wipe it once sent */
	const char *why;           /* reason for closing, for the debug log */
	struct kwd_job_owner jobs; /* requests answered later (a device, a batch) */
	struct kw_io io;
	struct kw_timer idle; /* idle timeout (also bounds the handshake) */
	struct kw_timer kick; /* serve buffered frames on the next turn */
	struct kw_timer hold; /* holding: read after HOLD_MAX_NS at the latest */
	uint64_t active_ns;   /* last request or write progress */
	uint64_t open_ns;     /* accepted: the handshake deadline counts from here */
	uint64_t rx_ns;       /* when the last bytes arrived */
	uint64_t slice_turn;  /* the loop turn (its start time) slice_used belongs to */
	uint64_t slice_used;  /* execution time used in that turn, against EXEC_SLICE_NS */
	size_t counted;       /* buffer bytes in the worker's buffer_bytes gauge */
	struct kw_buf rx;     /* bytes from the socket */
	struct kw_buf in;     /* TLS: decrypted request bytes */
	struct kw_buf resp;   /* TLS: plaintext responses not yet encrypted */
	struct kw_buf tx;     /* bytes for the socket */
	char peer[64];
	/* Who the client is, once authenticated: for the ACL and the audit log. */
	struct kwd_identity ident;
};

/* ---- the buffer BIO: SSL reads from rx and writes to tx ---- */

static int bio_write(BIO *b, const char *data, int len)
{
	struct kwd_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	if (len <= 0)
		return 0;
	if (kw_buf_append(&c->tx, data, (size_t)len) < 0)
		return -1;
	return len;
}

static int bio_read(BIO *b, char *out, int len)
{
	struct kwd_conn *c = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	size_t avail = kw_buf_unread(&c->rx);
	if (avail == 0) {
		if (c->eof)
			return 0;
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = (size_t)len < avail ? (size_t)len : avail;
	memcpy(out, kw_buf_head(&c->rx), n);
	kw_buf_consume(&c->rx, n);
	return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	struct kwd_conn *c = BIO_get_data(b);
	switch (cmd) {
	case BIO_CTRL_FLUSH:
		return 1;
	case BIO_CTRL_PENDING:
		return c ? (long)kw_buf_unread(&c->rx) : 0;
	case BIO_CTRL_EOF:
		return c && c->eof && kw_buf_unread(&c->rx) == 0;
	default:
		return 0;
	}
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

/* One method per process: BIO type indexes are few. Never freed, like OpenSSL's own. */
static BIO_METHOD *bio_method;
static pthread_once_t bio_method_once = PTHREAD_ONCE_INIT;

static void bio_method_create(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "keywayd conn");
	if (m == NULL)
		return;
	if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1) {
		BIO_meth_free(m);
		return;
	}
	bio_method = m;
}

/* tls_attach gives c an SSL object in accept state reading rx and writing tx; 0 or -ENOMEM. */
static int tls_attach(struct kwd_conn *c, SSL_CTX *ctx)
{
	BIO *bio = NULL;
	pthread_once(&bio_method_once, bio_method_create);
	if (bio_method == NULL || (c->ssl = SSL_new(ctx)) == NULL ||
	    (bio = BIO_new(bio_method)) == NULL) {
		SSL_free(c->ssl);
		c->ssl = NULL;
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(bio, c);
	SSL_set_bio(c->ssl, bio, bio);
	/* One SSL_write per batch; keep the record buffers between batches. */
	SSL_clear_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
	/* A client may half-close without close_notify: OpenSSL 3 would make that a
	 * fatal error and the frames decrypted just before it would go unanswered.
	 * Truncation cannot forge a request (frames are length-prefixed and an
	 * incomplete one is dropped), so an end of stream is just an end of stream. */
	SSL_set_options(c->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_accept_state(c->ssl);
	c->handshaking = true;
	return 0;
}

/* ---- teardown ---- */

static void conn_free(void *p)
{
	free(p);
}

/* account_buffers brings the worker's buffer_bytes gauge up to date for c. */
static void account_buffers(struct kwd_conn *c)
{
	size_t now = c->rx.cap + c->in.cap + c->resp.cap + c->tx.cap;
	/* Unsigned wrap-around makes this a subtraction when the buffers shrank. */
	kwd_counter_add(&c->env->metrics->buffer_bytes, (uint64_t)now - (uint64_t)c->counted);
	c->counted = now;
}

static void close_now(struct kwd_conn *c, const char *why)
{
	if (c->dead)
		return;
	struct kwd_conn_env *env = c->env;
	c->dead = true;
	if (why != NULL)
		kw_debug("connection %s closed: %s", c->peer, why);
	kw_io_stop(env->loop, &c->io);
	kw_timer_stop(env->loop, &c->idle);
	kw_timer_stop(env->loop, &c->kick);
	kw_timer_stop(env->loop, &c->hold);
	if (c->jobs.pending > 0)
		kwd_executor_detach(env->executor, &c->jobs);
	SSL_free(c->ssl); /* frees the BIO too */
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	kw_buf_cleanup(&c->rx);
	kw_buf_cleanup(&c->in);
	kw_buf_cleanup(&c->resp);
	kw_buf_cleanup(&c->tx);
	kwd_identity_cleanup(&c->ident);
	account_buffers(c);
	kwd_gauge_dec(&env->metrics->conns_open[c->transport]);
	/* An event for this connection may still be queued in this turn. */
	if (kw_loop_defer_free(env->loop, conn_free, c) < 0)
		kw_warn("cannot defer a connection free; leaking %zu bytes", sizeof(*c));
	env->closed(env->arg, c->owner);
}

/* close_tls_error closes c with OpenSSL's reason for the failure, or fallback. */
static void close_tls_error(struct kwd_conn *c, const char *fallback)
{
	char reason[256];
	kw_tls_err_string(reason, sizeof(reason));
	close_now(c, reason[0] ? reason : fallback);
}

/*
 * write_tx sends as much of tx as the socket takes: done when tx is empty,
 * blocked when the socket is full. A dead socket closes c, with why as the
 * reason or, if why is NULL, one naming the error.
 */
static enum kwd_step write_tx(struct kwd_conn *c, const char *why)
{
	while (kw_buf_unread(&c->tx) > 0) {
		size_t len = kw_buf_unread(&c->tx);
		ssize_t n = send(c->fd, kw_buf_head(&c->tx), len, MSG_NOSIGNAL);
		if (n > 0) {
			/* Without TLS, tx holds plaintext responses. */
			if (c->ssl == NULL && c->secret_out)
				OPENSSL_cleanse(kw_buf_head(&c->tx), (size_t)n);
			kw_buf_consume(&c->tx, (size_t)n);
			c->active_ns = kw_loop_now_ns(c->env->loop);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return KWD_STEP_BLOCKED;
		int rc = n < 0 ? -errno : -EPIPE;
		if (why == NULL)
			why =
			    rc == -EPIPE || rc == -ECONNRESET ? "peer went away" : kw_strerror(rc);
		close_now(c, why);
		return KWD_STEP_CLOSED;
	}
	return KWD_STEP_DONE;
}

/* close_graceful sends close_notify (TLS) and whatever output is pending, best effort. */
static void close_graceful(struct kwd_conn *c, const char *why)
{
	if (c->dead)
		return;
	if (c->ssl != NULL && !c->handshaking && !c->handshake_failed) {
		ERR_clear_error();
		SSL_shutdown(c->ssl);
		ERR_clear_error();
	}
	if (write_tx(c, why) != KWD_STEP_CLOSED)
		close_now(c, why);
}

/* ---- requests ---- */

static size_t pending_out(const struct kwd_conn *c)
{
	return kw_buf_unread(&c->resp) + kw_buf_unread(&c->tx);
}

static struct kw_buf *frames(struct kwd_conn *c)
{
	return c->ssl ? &c->in : &c->rx;
}

static size_t buffered_in(const struct kwd_conn *c)
{
	return kw_buf_unread(&c->rx) + kw_buf_unread(&c->in);
}

/* has_frame: a complete frame waits in the input. */
static bool has_frame(struct kwd_conn *c)
{
	struct kw_buf *src = frames(c);
	struct kw_header h;
	if (kw_header_parse(&h, kw_buf_head(src), kw_buf_unread(src)) < 0)
		return false;
	return kw_buf_unread(src) >= (size_t)KW_HEADER_LEN + h.length;
}

static void record(struct turn *t, uint8_t opcode, uint8_t err)
{
	if (t->nanswered < EXEC_BUDGET) {
		t->answered[t->nanswered].family = (uint8_t)kw_opcode_family(opcode);
		t->answered[t->nanswered].err = (uint8_t)kwd_metrics_error_index(err);
		t->nanswered++;
	}
}

static struct kw_buf *responses(struct kwd_conn *c)
{
	return c->ssl ? &c->resp : &c->tx;
}

/* queue_answer encodes the answer res to request id (of opcode) and wipes res. */
static int queue_answer(struct kwd_conn *c, uint32_t id, uint8_t opcode,
                        struct kwd_exec_result *res)
{
	struct kw_buf *out = responses(c);
	int rc = res->opcode == KW_OP_ERROR
	             ? kw_encode_error(out, id, (enum kw_proto_error)res->error, true)
	             : kw_encode_response(out, id, res->opcode, res->payload, res->len, true);
	kwd_exec_result_cleanse(res);
	/* Signatures are public; a raw RSA decryption is not. */
	if (opcode == KW_OP_RSA_DECRYPT && res->opcode == KW_OP_RESPONSE)
		c->secret_out = true;
	return rc;
}

static unsigned family_of(uint8_t opcode)
{
	unsigned fam = (unsigned)kw_opcode_family(opcode);
	return fam < KWD_NFAMILY ? fam : 0;
}

/*
 * authorize finds, with --acl or --audit-log, the key m names (*key) and
 * whether this client may use it for m's operation (acl.h).
 */
static enum kwd_acl_verdict authorize(struct kwd_conn *c, const struct kw_msg *m,
                                      const struct kwd_key **key)
{
	const struct kwd_gen *g = c->env->gen;
	*key = NULL;
	if (g == NULL || (g->acl == NULL && c->env->audit == NULL))
		return KWD_ACL_ALLOW;
	return kwd_acl_request(g->acl, &c->ident, g->ks, m, key);
}

/* audit counts a key request's outcome for --audit-log. */
static void audit(struct kwd_conn *c, uint8_t opcode, const struct kwd_key *key, bool denied,
                  uint8_t err)
{
	if (c->env->audit != NULL && kw_opcode_desc(opcode) != NULL)
		kwd_audit_note(c->env->audit, c->ident.name, key != NULL ? key->ski : NULL,
		               kwd_acl_op_of(opcode), denied, err != KW_ERR_NONE);
}

static int answer(struct kwd_conn *c, struct turn *t, uint32_t id, const struct kw_msg *m)
{
	struct kwd_conn_env *env = c->env;
	struct kwd_exec_result *res = &t->res;
	uint64_t exec_ns = 0;
	const struct kwd_key *key;

	kwd_counter_add(&env->metrics->requests[m->opcode], 1);
	enum kwd_acl_verdict v = authorize(c, m, &key);
	if (v != KWD_ACL_ALLOW) {
		/* An unknown key's very answer: no probing for keys one may not use. */
		kwd_exec_result_error(res, KW_ERR_KEY_NOT_FOUND);
		kwd_counter_add(&env->metrics->acl_denied[v], 1);
	} else if (kwd_executor_submit(env->executor, &c->jobs, id, m, res, &exec_ns) ==
	           KWD_PENDING) {
		return 0; /* audited when its answer comes back (on_job_done) */
	}
	uint8_t err = res->error;
	if (m->has_opcode)
		audit(c, m->opcode, key, v != KWD_ACL_ALLOW, err);
	int rc = queue_answer(c, id, m->opcode, res);
	kwd_hist_observe(&env->metrics->exec[family_of(m->opcode)][kwd_metrics_error_index(err)],
	                 exec_ns);
	record(t, m->opcode, err);
	return rc;
}

/*
 * serve_frames answers every complete frame in the input, stopping when the
 * unsent output reaches the backpressure bound or the connection has used its
 * slice of this turn (EXEC_SLICE_NS, or EXEC_BUDGET requests).
 */
static void serve_frames(struct kwd_conn *c, struct turn *t)
{
	struct kwd_conn_env *env = c->env;
	struct kw_buf *src = frames(c);
	unsigned n = 0;

	env->refresh(env->arg);
	/* A connection served twice in a turn (its socket and its kick) shares one slice. */
	uint64_t turn = kw_loop_now_ns(env->loop);
	if (c->slice_turn != turn) {
		c->slice_turn = turn;
		c->slice_used = 0;
	}
	uint64_t start = kw_now_ns(), now = start;
	while (!c->closing) {
		if (pending_out(c) >= env->out_bound || c->jobs.pending >= MAX_PENDING_JOBS)
			break;
		struct kw_header h;
		size_t avail = kw_buf_unread(src);
		if (kw_header_parse(&h, kw_buf_head(src), avail) < 0)
			break;
		size_t flen = (size_t)KW_HEADER_LEN + h.length;
		if (avail < flen)
			break;
		/* Past its slice, let the other connections of this loop have their
		 * turn: the kick resumes this one in the next turn, after their I/O
		 * events. If the kick cannot be armed, go on serving it now. */
		if ((n >= EXEC_BUDGET || c->slice_used + (now - start) >= EXEC_SLICE_NS) &&
		    kw_timer_start_us(env->loop, &c->kick, 0) == 0)
			break;
		n++;
		int rc;
		if (h.major != KW_PROTO_MAJOR) {
			rc = kw_encode_error(responses(c), h.id, KW_ERR_VERSION_MISMATCH, true);
		} else {
			struct kw_msg m;
			if (kw_msg_parse(&m, kw_buf_head(src) + KW_HEADER_LEN, h.length) < 0) {
				kw_debug("connection %s: malformed frame (id %u); closing", c->peer,
				         (unsigned)h.id);
				c->closing = true;
				c->why = "malformed frame";
				break;
			}
			rc = answer(c, t, h.id, &m);
		}
		kw_buf_consume(src, flen);
		if (rc < 0) {
			kw_warn("connection %s: cannot queue a response: %s", c->peer,
			        kw_strerror(rc));
			c->closing = true;
			c->why = "out of memory";
			break;
		}
		now = kw_now_ns();
	}
	c->slice_used += now - start;
	if (n > 0)
		c->active_ns = kw_loop_now_ns(env->loop);
}

/* ---- TLS ---- */

/* trust_of is the client CAs and CRLs of env's current generation (NULL without TLS). */
static X509_STORE *trust_of(const struct kwd_conn_env *env)
{
	return env->gen != NULL && env->gen->ssl_ctx != NULL
	           ? SSL_CTX_get_cert_store(env->gen->ssl_ctx)
	           : NULL;
}

/*
 * authenticated captures the client's identity once its handshake is done.
 * A handshake begun before a reload was verified with the old CAs and CRLs:
 * it is verified again with the current ones. false if that closed c.
 */
static bool authenticated(struct kwd_conn *c)
{
	X509_STORE *now = trust_of(c->env);
	if (now != NULL && now != SSL_CTX_get_cert_store(SSL_get_SSL_CTX(c->ssl)) &&
	    kwd_conn_reverify(c))
		return false;
	if (kwd_identity_from_tls(&c->ident, c->ssl) < 0) {
		close_now(c, "out of memory");
		return false;
	}
	return true;
}

static void log_handshake(struct kwd_conn *c)
{
	if (!kw_log_enabled(KW_LOG_DEBUG))
		return;
	char cn[128] = "?";
	X509 *peer = SSL_get0_peer_certificate(c->ssl);
	if (peer != NULL)
		X509_NAME_get_text_by_NID(X509_get_subject_name(peer), NID_commonName, cn,
		                          sizeof(cn));
	kw_debug("connection %s: %s %s, client '%s'", c->peer, SSL_get_version(c->ssl),
	         SSL_get_cipher_name(c->ssl), cn);
}

/*
 * A refused client certificate (revoked, its CA's CRL expired, an unknown CA)
 * is the operator's business, so it is a warning naming the reason; but a
 * client retrying in a loop meets it on every connection, so at most one line
 * per 10 s (all workers together), counting the ones held back.
 */
static struct kw_log_limit refused_limit = KW_LOG_LIMIT_INIT(10ull * 1000000000ull);

static void log_refused_cert(struct kwd_conn *c, long verify)
{
	unsigned long held;
	if (!kw_log_limit_pass(&refused_limit, kw_loop_now_ns(c->env->loop), &held))
		return;
	/* OpenSSL keeps no peer certificate after a failed verification: the
	 * address and the reason are what there is to name. */
	kw_warn("connection %s: client certificate refused: %s (%lu more refusals not logged "
	        "in the last 10 s)",
	        c->peer, X509_verify_cert_error_string(verify), held);
}

static void handshake_failed(struct kwd_conn *c, const char *why)
{
	char reason[256];
	long verify = SSL_get_verify_result(c->ssl);
	if (verify != X509_V_OK)
		log_refused_cert(c, verify);
	kw_tls_err_string(reason, sizeof(reason));
	kw_debug("connection %s: TLS handshake failed: %s%s%s", c->peer, why, reason[0] ? ": " : "",
	         reason);
	kwd_counter_add(&c->env->metrics->failed_conns, 1);
	c->handshake_failed = true;
	c->closing = true; /* flush the alert, then close */
	c->why = "TLS handshake failed";
}

static uint64_t deadline(const struct kwd_conn *c);

/*
 * tls_input runs the handshake and decrypts rx into in: done when requests
 * may be served, blocked while the handshake waits for the peer (or failed
 * and c is closing).
 */
static enum kwd_step tls_input(struct kwd_conn *c)
{
	if (c->handshaking) {
		ERR_clear_error();
		int r = SSL_do_handshake(c->ssl);
		if (r != 1) {
			int e = SSL_get_error(c->ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
				if (c->eof)
					handshake_failed(c, "peer closed the connection");
			} else {
				handshake_failed(c, e == SSL_ERROR_SSL ? "protocol error"
				                                       : "connection error");
			}
			return KWD_STEP_BLOCKED;
		}
		c->handshaking = false;
		log_handshake(c);
		if (!authenticated(c))
			return KWD_STEP_CLOSED;
		/* The timer was armed for the handshake deadline; from now on the idle
		 * timeout counts, and it may come sooner. Should re-arming fail, the
		 * armed timer still fires and on_idle applies the idle deadline then. */
		(void)kw_timer_start_at(c->env->loop, &c->idle, deadline(c));
	}
	for (;;) {
		if (kw_buf_reserve(&c->in, READ_CHUNK) < 0) {
			close_now(c, "out of memory");
			return KWD_STEP_CLOSED;
		}
		size_t n = 0;
		ERR_clear_error();
		int r = SSL_read_ex(c->ssl, kw_buf_tail(&c->in), c->in.cap - c->in.len, &n);
		if (r == 1) {
			c->in.len += n;
			continue;
		}
		int e = SSL_get_error(c->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return KWD_STEP_DONE;
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && c->eof)) {
			c->eof = true;
			return KWD_STEP_DONE;
		}
		close_tls_error(c, "TLS error");
		return KWD_STEP_CLOSED;
	}
}

/* ---- the service routine: read, answer, write, decide ---- */

/*
 * read_socket reads up to READ_BUDGET bytes into rx: blocked once the socket
 * is empty, done at the budget or the peer's end of stream; an error closes c.
 */
static enum kwd_step read_socket(struct kwd_conn *c)
{
	size_t budget = READ_BUDGET;
	int rc = 0;
	while (budget > 0) {
		if (kw_buf_reserve(&c->rx, READ_CHUNK) < 0) {
			rc = -ENOMEM;
			break;
		}
		size_t space = c->rx.cap - c->rx.len;
		if (space > budget)
			space = budget;
		ssize_t n = recv(c->fd, kw_buf_tail(&c->rx), space, 0);
		if (n > 0) {
			c->rx.len += (size_t)n;
			budget -= (size_t)n;
			c->rx_ns = kw_loop_now_ns(c->env->loop);
			if ((size_t)n < space) {
				c->input_drained = true;
				return KWD_STEP_BLOCKED;
			}
			c->input_drained = false;
			continue;
		}
		if (n == 0) {
			c->eof = true;
			c->input_drained = true;
			return KWD_STEP_DONE;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->input_drained = true;
			return KWD_STEP_BLOCKED;
		}
		rc = -errno;
		break;
	}
	if (rc == 0)
		return KWD_STEP_DONE;
	close_now(c, rc == -ECONNRESET ? "reset by peer" : kw_strerror(rc));
	return KWD_STEP_CLOSED;
}

/*
 * flush encrypts the pending responses and writes them (as write_tx), then
 * records the total duration of the requests answered in this turn.
 */
static enum kwd_step flush(struct kwd_conn *c, const struct turn *t)
{
	struct kwd_conn_env *env = c->env;
	if (c->ssl != NULL && !c->handshaking && kw_buf_unread(&c->resp) > 0) {
		size_t n = 0, len = kw_buf_unread(&c->resp);
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, kw_buf_head(&c->resp), len, &n) != 1 || n != len) {
			close_tls_error(c, "TLS write failed");
			return KWD_STEP_CLOSED;
		}
		if (c->secret_out)
			OPENSSL_cleanse(kw_buf_head(&c->resp), len);
		kw_buf_consume(&c->resp, len);
	}
	enum kwd_step step = write_tx(c, NULL);
	if (pending_out(c) == 0)
		c->secret_out = false;
	if (t->nanswered > 0) {
		uint64_t now = kw_now_ns(), d = now > c->rx_ns ? now - c->rx_ns : 0;
		for (unsigned i = 0; i < t->nanswered; i++)
			kwd_hist_observe(
			    &env->metrics->total[t->answered[i].family][t->answered[i].err], d);
	}
	return step;
}

/* release_burst frees the empty buffers a burst grew past KEEP_BUF_CAP. */
static void release_burst(struct kwd_conn *c)
{
	struct kw_buf *bufs[] = {&c->rx, &c->in, &c->resp, &c->tx};
	for (size_t i = 0; i < sizeof(bufs) / sizeof(bufs[0]); i++)
		if (bufs[i]->cap > KEEP_BUF_CAP && kw_buf_unread(bufs[i]) == 0)
			kw_buf_cleanup(bufs[i]); /* keeps its secret mark */
}

/*
 * hold_reads says whether c's socket waits for the device's answers instead
 * of being watched (see HOLD_MIN_JOBS), arming the bound the first time.
 * Without the timer the socket is watched as usual.
 */
static bool hold_reads(struct kwd_conn *c)
{
	if (c->jobs.pending < HOLD_MIN_JOBS || c->handshaking || c->draining) {
		c->holding = false;
		kw_timer_stop(c->env->loop, &c->hold);
		return false;
	}
	if (!c->holding) {
		if (kw_timer_start_at(c->env->loop, &c->hold,
		                      kw_loop_now_ns(c->env->loop) + HOLD_MAX_NS) < 0)
			return false;
		c->holding = true;
	}
	return true;
}

/* settle decides what to wait for next, or closes. */
static void settle(struct kwd_conn *c)
{
	struct kwd_conn_env *env = c->env;
	/* Answers still to come from a device or a batch count as output to send (each
	 * will be one padded frame). */
	size_t pend = pending_out(c) + (size_t)c->jobs.pending * KW_PADDED_LEN;

	if (!c->closing && c->eof && !has_frame(c)) {
		c->closing = true;
		c->why = "closed by peer";
	}
	if (!c->closing && c->draining && c->input_drained && !c->handshaking &&
	    buffered_in(c) == 0 && pend == 0) {
		/* An empty socket is not the end of a burst over TCP (the rest may wait
		 * in the client's send buffer): close after a short silence. */
		uint64_t quiet = c->rx_ns + DRAIN_QUIET_NS;
		/* Without the timer to wait for the silence, close now rather than never. */
		if (kw_loop_now_ns(env->loop) >= quiet ||
		    kw_timer_start_at(env->loop, &c->kick, quiet) < 0) {
			close_graceful(c, "drained");
			return;
		}
	}
	if (c->closing && pend == 0) {
		if (c->handshake_failed)
			close_now(c, c->why);
		else
			close_graceful(c, c->why);
		return;
	}
	if (!c->paused && pend >= env->out_bound) {
		c->paused = true;
	} else if (c->paused && pend <= env->out_bound / 2) {
		c->paused = false; /* the frames left are kicked below */
	}
	/* serve_frames stops at the output bound; once that output is gone, the
	 * frames left must not wait for socket input that may never come (a full
	 * input buffer stops reading; a client that has sent everything sends no more). */
	if (!c->paused && !c->closing && !c->handshaking && has_frame(c) &&
	    kw_timer_start_us(env->loop, &c->kick, 0) < 0) {
		close_now(c, "cannot schedule the next requests");
		return;
	}
	release_burst(c);
	account_buffers(c);
	unsigned ev = 0;
	if (!c->paused && !c->closing && buffered_in(c) < MAX_BUFFERED_IN && !hold_reads(c))
		ev |= KW_EV_READ;
	if (kw_buf_unread(&c->tx) > 0)
		ev |= KW_EV_WRITE;
	int rc = kw_io_modify(env->loop, &c->io, ev);
	if (rc < 0)
		close_now(c, kw_strerror(rc));
}

/* ---- answers that come later (executor.h) ---- */

static void on_job_done(struct kwd_job_owner *o, struct kwd_job *job)
{
	struct kwd_conn *c = kw_container_of(o, struct kwd_conn, jobs);
	struct kwd_conn_env *env = c->env;
	uint8_t err = job->res.error;
	audit(c, job->op.opcode, job->op.key, false, err);
	unsigned fam = family_of(job->op.opcode);
	unsigned ei = kwd_metrics_error_index(err);
	if (queue_answer(c, job->id, job->op.opcode, &job->res) < 0) {
		kw_warn("connection %s: cannot queue a response", c->peer);
		c->closing = true;
		c->why = "out of memory";
	}
	uint64_t now = kw_now_ns();
	kwd_hist_observe(&env->metrics->exec[fam][ei], job->exec_ns);
	kwd_hist_observe(&env->metrics->total[fam][ei], now - job->submit_ns);
	c->active_ns = kw_loop_now_ns(env->loop);
}

static void service(struct kwd_conn *c, bool can_read);

/* read_held ends c's hold: its socket is read now, and held again from here if still busy. */
static void read_held(struct kwd_conn *c)
{
	c->holding = false;
	kw_timer_stop(c->env->loop, &c->hold);
	service(c, true);
}

static void on_jobs_settle(struct kwd_job_owner *o)
{
	struct kwd_conn *c = kw_container_of(o, struct kwd_conn, jobs);
	struct turn t;
	t.nanswered = 0;
	if (c->dead)
		return;
	if (c->holding) { /* awake anyway: read what the client sent meanwhile */
		read_held(c);
		return;
	}
	if (flush(c, &t) != KWD_STEP_CLOSED)
		settle(c);
}

/* on_job_dropped: the connection closes before job's answer: the request still counts in
 * the audit log, as a failure (the client never got an answer). */
static void on_job_dropped(struct kwd_job_owner *o, const struct kwd_job *job)
{
	struct kwd_conn *c = kw_container_of(o, struct kwd_conn, jobs);
	audit(c, job->op.opcode, job->op.key, false, KW_ERR_INTERNAL);
}

static const struct kwd_job_owner_ops job_ops = {
    .done = on_job_done,
    .settle = on_jobs_settle,
    .dropped = on_job_dropped,
};

static void service(struct kwd_conn *c, bool can_read)
{
	struct turn t;
	t.nanswered = 0;
	if (can_read && !c->paused && !c->closing && buffered_in(c) < MAX_BUFFERED_IN &&
	    read_socket(c) == KWD_STEP_CLOSED)
		return;
	if (!c->closing) {
		enum kwd_step step = c->ssl != NULL ? tls_input(c) : KWD_STEP_DONE;
		if (step == KWD_STEP_CLOSED)
			return;
		if (step == KWD_STEP_DONE)
			serve_frames(c, &t);
	}
	if (flush(c, &t) != KWD_STEP_CLOSED)
		settle(c);
}

static void on_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kwd_conn *c = arg;
	if (c->dead)
		return;
	service(c, (events & KW_EV_READ) != 0);
}

static void on_kick(struct kw_loop *loop, void *arg)
{
	struct kwd_conn *c = arg;
	if (!c->dead)
		service(c, false);
}

static void on_hold(struct kw_loop *loop, void *arg)
{
	struct kwd_conn *c = arg;
	if (!c->dead)
		read_held(c); /* the bound */
}

/*
 * deadline is when c times out: a handshake has its own bound from accept,
 * which neither side's bytes refresh (a peer that never finishes must not
 * live on the server's own writes); afterwards the idle timer applies.
 */
static uint64_t deadline(const struct kwd_conn *c)
{
	uint64_t idle = c->active_ns + c->env->idle_ns;
	if (c->handshaking && c->env->handshake_ns != 0)
		return c->open_ns + c->env->handshake_ns;
	return idle;
}

static void on_idle(struct kw_loop *loop, void *arg)
{
	struct kwd_conn *c = arg;
	/* Waiting on a device is not idleness. */
	if (c->jobs.pending > 0)
		c->active_ns = kw_loop_now_ns(loop);
	uint64_t deadline_ns = deadline(c);
	if (kw_loop_now_ns(loop) < deadline_ns) {
		/* Unarmed, the idle timer would never close this connection. */
		if (kw_timer_start_at(loop, &c->idle, deadline_ns) < 0)
			close_graceful(c, "cannot re-arm the idle timer");
		return;
	}
	if (c->handshaking) {
		kwd_counter_add(&c->env->metrics->failed_conns, 1);
		close_now(c, "TLS handshake timed out");
		return;
	}
	close_graceful(c, "idle timeout");
}

/* ---- public ---- */

int kwd_conn_open(struct kwd_conn **out, struct kwd_conn_env *env, void *owner, int fd,
                  enum kwd_transport transport, SSL_CTX *ctx, const char *peer)
{
	struct kwd_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->env = env;
	c->owner = owner;
	c->fd = fd;
	c->transport = transport;
	/* Answers carry signatures and decrypted blocks: wiped as soon as they are sent
	 * (tx is plaintext on a Unix socket; resp is the plaintext before TLS). */
	kw_buf_set_secret(&c->resp);
	kw_buf_set_secret(&c->tx);
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	kw_io_init(&c->io, on_io, c);
	kw_timer_init(&c->idle, on_idle, c);
	kw_timer_init(&c->kick, on_kick, c);
	kw_timer_init(&c->hold, on_hold, c);
	kwd_job_owner_init(&c->jobs, &job_ops);
	c->open_ns = c->active_ns = c->rx_ns = kw_loop_now_ns(env->loop);

	/* A Unix-socket peer is known at accept, by its uid (SO_PEERCRED). */
	int rc = ctx != NULL ? tls_attach(c, ctx) : kwd_identity_from_unix(&c->ident, fd);
	if (rc == 0)
		rc = kw_io_start(env->loop, &c->io, fd, KW_EV_READ);
	if (rc == 0)
		rc = kw_timer_start_at(env->loop, &c->idle, deadline(c));
	if (rc < 0) {
		kw_io_stop(env->loop, &c->io);
		SSL_free(c->ssl);
		kwd_identity_cleanup(&c->ident);
		close(fd);
		free(c);
		return rc;
	}
	kwd_counter_add(&env->metrics->conns_open[transport], 1);
	kwd_counter_add(&env->metrics->conns_total[transport], 1);
	*out = c;
	return 0;
}

void kwd_conn_drain(struct kwd_conn *c)
{
	if (c->dead || c->draining)
		return;
	c->draining = true;
	/* Read whatever the peer already sent, answer it, and close when done. A
	 * client whose Finished is already here (its requests right behind it)
	 * completes its handshake in this read and is answered; one that is still
	 * mid-handshake after it is closed, as nothing it sends can be served. */
	c->input_drained = false;
	service(c, true);
	if (!c->dead && c->handshaking)
		close_now(c, "shutting down");
}

size_t kwd_conn_buffer_bytes(const struct kwd_conn *c)
{
	return c->rx.cap + c->in.cap + c->resp.cap + c->tx.cap;
}

void kwd_conn_abort(struct kwd_conn *c)
{
	close_now(c, "drain deadline");
}

bool kwd_conn_handshaking(const struct kwd_conn *c)
{
	return !c->dead && c->handshaking;
}

bool kwd_conn_reverify(struct kwd_conn *c)
{
	char why[256];
	X509_STORE *trust = trust_of(c->env);
	if (c->dead || c->ssl == NULL || c->handshaking || trust == NULL)
		return false;
	if (kwd_identity_reverify(c->ssl, trust, why, sizeof(why)))
		return false;
	kw_info("connection %s closed: its client certificate no longer verifies: %s", c->peer,
	        why);
	kwd_counter_add(&c->env->metrics->reverify_closed, 1);
	close_now(c, NULL);
	return true;
}

void kwd_conn_evict(struct kwd_conn *c)
{
	close_now(c, "evicted by a new connection at --max-connections");
}
