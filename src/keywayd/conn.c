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
 * Teardown: close_now() releases the socket and SSL at once but the struct
 * itself is freed at the end of the loop turn, so any caller up the stack
 * only has to check c->dead.
 */
#include "conn.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/loop.h"
#include "keyway/protocol.h"
#include "keyway/tls.h"
#include "exec.h"
#include "worker.h"

#define READ_CHUNK 16384
#define READ_BUDGET (64 * 1024)      /* socket bytes per connection per turn, for fairness */
#define MAX_BUFFERED_IN (256 * 1024) /* unparsed input above which reading waits (> max frame) */
#define EXEC_BUDGET KWD_BATCH_MAX    /* requests answered per connection per turn */
#define DRAIN_QUIET_NS 50000000u     /* draining: silence after which a client is done */

struct kwd_conn {
	struct kwd_worker *w;
	struct kwd_conn *prev, *next;
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
	bool secret_out; /* queued output holds a decrypted block: wipe it once sent */
	const char *why; /* reason for closing, for the debug log */
	struct kw_io io;
	struct kw_timer idle; /* idle timeout (also bounds the handshake) */
	struct kw_timer kick; /* serve buffered frames on the next turn */
	uint64_t active_ns;   /* last request or write progress */
	uint64_t rx_ns;       /* when the last bytes arrived */
	struct kw_buf rx;     /* bytes from the socket */
	struct kw_buf in;     /* TLS: decrypted request bytes */
	struct kw_buf resp;   /* TLS: plaintext responses not yet encrypted */
	struct kw_buf tx;     /* bytes for the socket */
	char peer[64];
};

static void service(struct kwd_conn *c, bool can_read);

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

BIO_METHOD *kwd_conn_bio_method(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "keywayd conn");
	if (m == NULL)
		return NULL;
	if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
	    BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1) {
		BIO_meth_free(m);
		return NULL;
	}
	return m;
}

/* ---- teardown ---- */

static void conn_free(void *p)
{
	free(p);
}

static void close_now(struct kwd_conn *c, const char *why)
{
	if (c->dead)
		return;
	struct kwd_worker *w = c->w;
	c->dead = true;
	if (why != NULL)
		kw_debug("connection %s closed: %s", c->peer, why);
	kw_io_stop(w->loop, &c->io);
	kw_timer_stop(w->loop, &c->idle);
	kw_timer_stop(w->loop, &c->kick);
	SSL_free(c->ssl); /* frees the BIO too */
	c->ssl = NULL;
	close(c->fd);
	c->fd = -1;
	kw_buf_cleanup(&c->rx);
	kw_buf_cleanup(&c->in);
	kw_buf_cleanup(&c->resp);
	kw_buf_cleanup(&c->tx);
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
	kwd_gauge_dec(&w->metrics.conns_open[c->transport]);
	/* An event for this connection may still be queued in this turn. */
	if (kw_loop_defer_free(w->loop, conn_free, c) < 0)
		kw_warn("cannot defer a connection free; leaking %zu bytes", sizeof(*c));
	kwd_worker_conn_closed(w);
}

/* write_tx sends as much of tx as the socket takes; 0, or -errno on a dead socket. */
static int write_tx(struct kwd_conn *c)
{
	while (kw_buf_unread(&c->tx) > 0) {
		size_t len = kw_buf_unread(&c->tx);
		ssize_t n = send(c->fd, kw_buf_head(&c->tx), len, MSG_NOSIGNAL);
		if (n > 0) {
			/* Without TLS, tx holds plaintext responses. */
			if (c->ssl == NULL && c->secret_out)
				OPENSSL_cleanse(kw_buf_head(&c->tx), (size_t)n);
			kw_buf_consume(&c->tx, (size_t)n);
			c->active_ns = kw_loop_now_ns(c->w->loop);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return 0;
		return n < 0 ? -errno : -EPIPE;
	}
	return 0;
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
	write_tx(c);
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

static void record(struct kwd_worker *w, uint8_t opcode, uint8_t err)
{
	if (w->nbatch < KWD_BATCH_MAX) {
		w->batch[w->nbatch].family = (uint8_t)kw_opcode_family(opcode);
		w->batch[w->nbatch].err = (uint8_t)kwd_metrics_error_index(err);
		w->nbatch++;
	}
}

static int answer(struct kwd_conn *c, uint32_t id, const struct kw_msg *m)
{
	struct kwd_worker *w = c->w;
	struct kwd_exec_result *res = &w->result;
	struct kw_buf *out = c->ssl ? &c->resp : &c->tx;

	uint64_t t0 = kw_now_ns();
	kwd_exec_run(w->signer, w->gen->ks, m, res);
	uint64_t t1 = kw_now_ns();
	int rc = res->opcode == KW_OP_ERROR
	             ? kw_encode_error(out, id, (enum kw_proto_error)res->error, true)
	             : kw_encode_response(out, id, res->opcode, res->payload, res->len, true);
	kwd_exec_result_cleanse(res);
	/* Signatures are public; a raw RSA decryption is not. */
	if (m->opcode == KW_OP_RSA_DECRYPT && res->opcode == KW_OP_RESPONSE)
		c->secret_out = true;

	unsigned fam = (unsigned)kw_opcode_family(m->opcode);
	if (fam >= KWD_NFAMILY)
		fam = 0;
	kwd_counter_add(&w->metrics.requests[m->opcode], 1);
	kwd_hist_observe(&w->metrics.exec[fam][kwd_metrics_error_index(res->error)], t1 - t0);
	record(w, m->opcode, res->error);
	return rc;
}

/*
 * serve_frames answers every complete frame in the input, stopping when the
 * unsent output reaches the backpressure bound or the per-turn budget.
 */
static void serve_frames(struct kwd_conn *c)
{
	struct kwd_worker *w = c->w;
	struct kw_buf *src = frames(c);
	unsigned n = 0;

	kwd_worker_refresh(w);
	while (!c->closing) {
		if (pending_out(c) >= w->out_bound)
			break;
		struct kw_header h;
		size_t avail = kw_buf_unread(src);
		if (kw_header_parse(&h, kw_buf_head(src), avail) < 0)
			break;
		size_t flen = (size_t)KW_HEADER_LEN + h.length;
		if (avail < flen)
			break;
		if (n == EXEC_BUDGET) {
			/* Let the other connections of this worker have their turn. */
			kw_timer_start_us(w->loop, &c->kick, 0);
			break;
		}
		n++;
		int rc;
		if (h.major != KW_PROTO_MAJOR) {
			rc = kw_encode_error(c->ssl ? &c->resp : &c->tx, h.id,
			                     KW_ERR_VERSION_MISMATCH, true);
		} else {
			struct kw_msg m;
			if (kw_msg_parse(&m, kw_buf_head(src) + KW_HEADER_LEN, h.length) < 0) {
				kw_debug("connection %s: malformed frame (id %u); closing", c->peer,
				         (unsigned)h.id);
				c->closing = true;
				c->why = "malformed frame";
				break;
			}
			rc = answer(c, h.id, &m);
		}
		kw_buf_consume(src, flen);
		if (rc < 0) {
			kw_warn("connection %s: cannot queue a response: %s", c->peer,
			        kw_strerror(rc));
			c->closing = true;
			c->why = "out of memory";
			break;
		}
	}
	if (n > 0)
		c->active_ns = kw_loop_now_ns(w->loop);
}

/* ---- TLS ---- */

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

static void handshake_failed(struct kwd_conn *c, const char *why)
{
	char reason[256];
	kw_tls_err_string(reason, sizeof(reason));
	kw_debug("connection %s: TLS handshake failed: %s%s%s", c->peer, why, reason[0] ? ": " : "",
	         reason);
	kwd_counter_add(&c->w->metrics.failed_conns, 1);
	c->handshake_failed = true;
	c->closing = true; /* flush the alert, then close */
	c->why = "TLS handshake failed";
}

/* tls_input runs the handshake and decrypts rx into in; false if c must stop. */
static bool tls_input(struct kwd_conn *c)
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
			return false;
		}
		c->handshaking = false;
		log_handshake(c);
	}
	for (;;) {
		if (kw_buf_reserve(&c->in, READ_CHUNK) < 0) {
			close_now(c, "out of memory");
			return false;
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
			return true;
		if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && c->eof)) {
			c->eof = true;
			return true;
		}
		char reason[256];
		kw_tls_err_string(reason, sizeof(reason));
		close_now(c, reason[0] ? reason : "TLS error");
		return false;
	}
}

/* ---- the service routine: read, answer, write, decide ---- */

/* read_socket reads up to READ_BUDGET bytes into rx; 0 or -errno. */
static int read_socket(struct kwd_conn *c)
{
	size_t budget = READ_BUDGET;
	while (budget > 0) {
		if (kw_buf_reserve(&c->rx, READ_CHUNK) < 0)
			return -ENOMEM;
		size_t space = c->rx.cap - c->rx.len;
		if (space > budget)
			space = budget;
		ssize_t n = recv(c->fd, kw_buf_tail(&c->rx), space, 0);
		if (n > 0) {
			c->rx.len += (size_t)n;
			budget -= (size_t)n;
			c->rx_ns = kw_loop_now_ns(c->w->loop);
			if ((size_t)n < space) {
				c->input_drained = true;
				return 0;
			}
			c->input_drained = false;
			continue;
		}
		if (n == 0) {
			c->eof = true;
			c->input_drained = true;
			return 0;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN || errno == EWOULDBLOCK) {
			c->input_drained = true;
			return 0;
		}
		return -errno;
	}
	return 0;
}

/* flush encrypts the pending responses and writes; records total durations. */
static void flush(struct kwd_conn *c)
{
	struct kwd_worker *w = c->w;
	if (c->ssl != NULL && !c->handshaking && kw_buf_unread(&c->resp) > 0) {
		size_t n = 0, len = kw_buf_unread(&c->resp);
		ERR_clear_error();
		if (SSL_write_ex(c->ssl, kw_buf_head(&c->resp), len, &n) != 1 || n != len) {
			char reason[256];
			kw_tls_err_string(reason, sizeof(reason));
			w->nbatch = 0;
			close_now(c, reason[0] ? reason : "TLS write failed");
			return;
		}
		if (c->secret_out)
			OPENSSL_cleanse(kw_buf_head(&c->resp), len);
		kw_buf_consume(&c->resp, len);
	}
	int rc = write_tx(c);
	if (pending_out(c) == 0)
		c->secret_out = false;
	if (w->nbatch > 0) {
		uint64_t now = kw_now_ns(), d = now > c->rx_ns ? now - c->rx_ns : 0;
		for (unsigned i = 0; i < w->nbatch; i++)
			kwd_hist_observe(&w->metrics.total[w->batch[i].family][w->batch[i].err], d);
		w->nbatch = 0;
	}
	if (rc < 0)
		close_now(c,
		          rc == -EPIPE || rc == -ECONNRESET ? "peer went away" : kw_strerror(rc));
}

/* settle decides what to wait for next, or closes. */
static void settle(struct kwd_conn *c)
{
	struct kwd_worker *w = c->w;
	size_t pend = pending_out(c);

	if (!c->closing && c->eof && !has_frame(c)) {
		c->closing = true;
		c->why = "closed by peer";
	}
	if (!c->closing && c->draining && c->input_drained && !c->handshaking &&
	    buffered_in(c) == 0 && pend == 0) {
		/* An empty socket is not the end of a burst over TCP (the rest may wait
		 * in the client's send buffer): close after a short silence. */
		uint64_t quiet = c->rx_ns + DRAIN_QUIET_NS;
		if (kw_loop_now_ns(w->loop) >= quiet) {
			close_graceful(c, "drained");
			return;
		}
		kw_timer_start_at(w->loop, &c->kick, quiet);
	}
	if (c->closing && pend == 0) {
		if (c->handshake_failed)
			close_now(c, c->why);
		else
			close_graceful(c, c->why);
		return;
	}
	if (!c->paused && pend >= w->out_bound) {
		c->paused = true;
	} else if (c->paused && pend <= w->out_bound / 2) {
		c->paused = false;
		if (has_frame(c))
			kw_timer_start_us(w->loop, &c->kick, 0);
	}
	unsigned ev = 0;
	if (!c->paused && !c->closing && buffered_in(c) < MAX_BUFFERED_IN)
		ev |= KW_EV_READ;
	if (kw_buf_unread(&c->tx) > 0)
		ev |= KW_EV_WRITE;
	int rc = kw_io_modify(w->loop, &c->io, ev);
	if (rc < 0)
		close_now(c, kw_strerror(rc));
}

static void service(struct kwd_conn *c, bool can_read)
{
	if (can_read && !c->paused && !c->closing && buffered_in(c) < MAX_BUFFERED_IN) {
		int rc = read_socket(c);
		if (rc < 0) {
			close_now(c, rc == -ECONNRESET ? "reset by peer" : kw_strerror(rc));
			return;
		}
	}
	if (!c->closing) {
		if (c->ssl == NULL || tls_input(c))
			serve_frames(c);
		if (c->dead)
			return;
	}
	flush(c);
	if (!c->dead)
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

static void on_idle(struct kw_loop *loop, void *arg)
{
	struct kwd_conn *c = arg;
	uint64_t deadline = c->active_ns + c->w->idle_ns;
	if (kw_loop_now_ns(loop) < deadline) {
		kw_timer_start_at(loop, &c->idle, deadline);
		return;
	}
	if (c->handshaking) {
		kwd_counter_add(&c->w->metrics.failed_conns, 1);
		close_now(c, "TLS handshake timed out");
		return;
	}
	close_graceful(c, "idle timeout");
}

/* ---- public ---- */

int kwd_conn_open(struct kwd_worker *w, int fd, enum kwd_transport transport, SSL_CTX *ctx,
                  const char *peer)
{
	struct kwd_conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		close(fd);
		return -ENOMEM;
	}
	c->w = w;
	c->fd = fd;
	c->transport = transport;
	snprintf(c->peer, sizeof(c->peer), "%s", peer);
	kw_io_init(&c->io, on_io, c);
	kw_timer_init(&c->idle, on_idle, c);
	kw_timer_init(&c->kick, on_kick, c);
	c->active_ns = c->rx_ns = kw_loop_now_ns(w->loop);

	if (ctx != NULL) {
		BIO *bio = NULL;
		c->ssl = SSL_new(ctx);
		if (c->ssl != NULL)
			bio = BIO_new(w->srv->bio_method);
		if (bio == NULL) {
			SSL_free(c->ssl);
			close(fd);
			free(c);
			ERR_clear_error();
			return -ENOMEM;
		}
		BIO_set_data(bio, c);
		SSL_set_bio(c->ssl, bio, bio);
		/* One SSL_write per batch; keep the record buffers between batches. */
		SSL_clear_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);
		SSL_set_accept_state(c->ssl);
		c->handshaking = true;
	}
	int rc = kw_io_start(w->loop, &c->io, fd, KW_EV_READ);
	if (rc == 0)
		rc = kw_timer_start_at(w->loop, &c->idle, c->active_ns + w->idle_ns);
	if (rc < 0) {
		kw_io_stop(w->loop, &c->io);
		SSL_free(c->ssl);
		close(fd);
		free(c);
		return rc;
	}
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->nconns++;
	kwd_counter_add(&w->metrics.conns_open[transport], 1);
	kwd_counter_add(&w->metrics.conns_total[transport], 1);
	kw_debug("connection %s accepted by worker %u", c->peer, w->id);
	if (w->draining)
		kwd_conn_drain(c);
	return 0;
}

void kwd_conn_drain(struct kwd_conn *c)
{
	if (c->dead || c->draining)
		return;
	c->draining = true;
	if (c->handshaking) {
		close_now(c, "shutting down");
		return;
	}
	/* Read whatever the peer already sent, answer it, and close when done. */
	c->input_drained = false;
	service(c, true);
}

void kwd_conn_abort(struct kwd_conn *c)
{
	close_now(c, "drain deadline");
}

struct kwd_conn *kwd_conn_next(const struct kwd_conn *c)
{
	return c->next;
}
