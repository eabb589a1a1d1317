/*
 * client.c - the pipelined keyless client (see keyway/client.h).
 *
 * Pending requests live in a ring of slots indexed by id & mask: IDs are
 * sequential and at most max_inflight are pending, so with twice as many
 * slots a lookup by ID is one index and a compare. The slots are also linked
 * in submission order, which is deadline order because every request has
 * the same timeout: one timer watches the oldest.
 *
 * A connection has a generation; a request belongs to the generation that
 * was current when it was submitted. When a connection dies its requests
 * are stamped with the error and completed from the loop (never from inside
 * kw_client_submit or kw_client_flush), oldest first. Callbacks may submit,
 * flush or free the client: every loop that runs callbacks re-checks the
 * generation and the freeing flag after each one.
 */
#include "keyway/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "keyway/err.h"
#include "keyway/log.h"
#include "keyway/tls.h"

#define CLIENT_MAGIC 0x6b77636cu /* "kwcl" */
#define NIL UINT32_MAX
#define READ_CHUNK (32u * 1024)
/* Read at most this much per readiness event so one busy link can't starve the loop. */
#define READ_BUDGET (512u * 1024)

enum conn_state {
	CONN_DOWN,       /* no socket */
	CONN_CONNECTING, /* non-blocking connect in progress */
	CONN_HANDSHAKE,  /* TLS handshake in progress */
	CONN_UP,         /* requests flow */
};

struct slot {
	uint64_t gen;       /* connection generation carrying the request */
	uint64_t submit_ns; /* kw_now_ns() at submit; deadline = submit_ns + timeout */
	kw_client_cb cb;
	void *arg;
	uint32_t id;
	uint32_t prev, next; /* submission-order list (slot indices) */
	int status;          /* the error, once its connection died */
	uint8_t opcode;      /* request opcode, to check the answer's */
	bool used;
};

struct kw_client {
	uint32_t magic;
	struct kw_loop *loop;
	struct kw_addr addr;
	char addr_text[300]; /* for log lines */
	SSL_CTX *ssl_ctx;    /* referenced; NULL for unix */
	char *server_name;   /* NULL: addr.host */
	uint64_t timeout_ns;
	uint64_t connect_timeout_ns;
	unsigned max_inflight;

	enum conn_state state;
	int fd;
	SSL *ssl;
	struct kw_io io;
	bool hs_want_write;    /* handshake waits for writability */
	bool write_blocked;    /* output waits for writability */
	bool write_wants_read; /* SSL_write returned WANT_READ */
	bool read_wants_write; /* SSL_read returned WANT_WRITE */
	struct kw_buf out;     /* encoded requests not yet written */
	struct kw_buf in;      /* received bytes not yet parsed */
	uint64_t gen;          /* generation of the current (or next) connection */

	struct slot *slots;
	uint32_t mask;       /* slot count - 1 (power of two) */
	uint32_t head, tail; /* oldest and newest pending */
	uint32_t next_id;
	unsigned inflight;

	struct kw_timer deadline;   /* oldest request's deadline, or "now" to reap dead ones */
	struct kw_timer conn_timer; /* connect + handshake deadline */
	struct kw_hook hook;        /* writes what the turn queued */
	bool freeing;               /* kw_client_free ran; memory goes at the end of the turn */
	bool failing;               /* the last connection attempt failed: log repeats quietly */
	uint64_t dropped;           /* answers whose request had completed (e.g. timed out) */
};

static void check_magic(const struct kw_client *c)
{
	if (c->magic != CLIENT_MAGIC) {
		kw_error("keyless client: bad magic %#x (use after free?)", c->magic);
		abort();
	}
}

/* ---- pending list ---- */

static void fifo_append(struct kw_client *c, uint32_t i)
{
	struct slot *s = &c->slots[i];
	s->prev = c->tail;
	s->next = NIL;
	if (c->tail != NIL)
		c->slots[c->tail].next = i;
	else
		c->head = i;
	c->tail = i;
}

static void fifo_unlink(struct kw_client *c, uint32_t i)
{
	struct slot *s = &c->slots[i];
	if (s->prev != NIL)
		c->slots[s->prev].next = s->next;
	else
		c->head = s->next;
	if (s->next != NIL)
		c->slots[s->next].prev = s->prev;
	else
		c->tail = s->prev;
	s->prev = s->next = NIL;
}

/* finish completes slot i: the slot is free again before the callback runs. */
static void finish(struct kw_client *c, uint32_t i, struct kw_client_result *res)
{
	struct slot *s = &c->slots[i];
	kw_client_cb cb = s->cb;
	void *arg = s->arg;

	res->latency_ns = kw_now_ns() - s->submit_ns;
	fifo_unlink(c, i);
	s->used = false;
	s->cb = NULL;
	c->inflight--;
	cb(arg, res);
}

static void finish_error(struct kw_client *c, uint32_t i, int status)
{
	struct kw_client_result res = {.status = status};
	finish(c, i, &res);
}

static void arm_deadline(struct kw_client *c, uint64_t at)
{
	if (kw_timer_active(&c->deadline) && c->deadline.deadline_ns <= at)
		return;
	/* Only fails when the heap cannot grow; the request then waits for its answer. */
	if (kw_timer_start_at(c->loop, &c->deadline, at) < 0)
		kw_error("keyless client %s: cannot arm request timer", c->addr_text);
}

/*
 * complete_due completes, oldest first, the requests whose connection died
 * before this call and those past their deadline. Requests that die during
 * the callbacks are left for the next turn (the timer is armed at "now"), so
 * a callback that resubmits into a failing connect can't loop here forever.
 */
static void conn_close(struct kw_client *c, int err);

static void complete_due(struct kw_client *c)
{
	uint64_t limit = c->gen, now = kw_now_ns();
	bool expired = false;

	while (!c->freeing && c->head != NIL) {
		struct slot *s = &c->slots[c->head];
		if (s->gen < limit) {
			finish_error(c, c->head, s->status);
		} else if (s->gen == c->gen && s->submit_ns + c->timeout_ns <= now) {
			expired = true;
			finish_error(c, c->head, -KW_ETIMEOUT);
		} else {
			break;
		}
	}
	if (c->freeing)
		return;
	/*
	 * A server that has not even taken our requests for a whole timeout
	 * is stuck: drop the link rather than queue output forever.
	 */
	if (expired && c->state == CONN_UP && (c->write_blocked || c->write_wants_read)) {
		kw_warn("keyserver %s: not reading requests; reconnecting", c->addr_text);
		conn_close(c, -KW_ETIMEOUT);
	}
	if (c->head == NIL)
		return;
	struct slot *s = &c->slots[c->head];
	arm_deadline(c, s->gen < c->gen ? now : s->submit_ns + c->timeout_ns);
}

/* ---- connection ---- */

static void log_close(struct kw_client *c, int err)
{
	/* One line when a link breaks, not one per retry while the server stays down. */
	enum kw_log_level lvl = c->inflight > 0 && !c->failing ? KW_LOG_WARN : KW_LOG_DEBUG;
	if (err == -KW_ECANCELED || !kw_log_enabled(lvl))
		return;
	kw_log(lvl, "keyserver %s: connection closed: %s (%u requests pending)", c->addr_text,
	       kw_strerror(err), c->inflight);
}

/*
 * conn_close tears the connection down and stamps every request it carried
 * with err. No callback runs here; the requests complete in complete_due,
 * right away in loop context or at "now" on the timer.
 */
static void conn_close(struct kw_client *c, int err)
{
	if (c->state != CONN_DOWN) {
		log_close(c, err);
		kw_io_stop(c->loop, &c->io);
		if (c->ssl != NULL) {
			if (err == -KW_ECANCELED && c->state == CONN_UP)
				(void)SSL_shutdown(c->ssl); /* best effort close_notify */
			SSL_free(c->ssl);
			c->ssl = NULL;
			ERR_clear_error();
		}
		close(c->fd);
		c->fd = -1;
		kw_timer_stop(c->loop, &c->conn_timer);
	}
	if (c->state != CONN_UP && err != -KW_ECANCELED)
		c->failing = true;
	c->state = CONN_DOWN;
	c->hs_want_write = c->write_blocked = false;
	c->write_wants_read = c->read_wants_write = false;
	kw_buf_reset(&c->out);
	kw_buf_reset(&c->in);

	bool any = false;
	for (uint32_t i = c->tail; i != NIL && c->slots[i].gen == c->gen; i = c->slots[i].prev) {
		c->slots[i].status = err;
		any = true;
	}
	c->gen++;
	if (any)
		arm_deadline(c, kw_now_ns());
}

static int update_events(struct kw_client *c)
{
	unsigned ev;

	switch (c->state) {
	case CONN_CONNECTING:
		ev = KW_EV_WRITE;
		break;
	case CONN_HANDSHAKE:
		ev = c->hs_want_write ? KW_EV_WRITE : KW_EV_READ;
		break;
	case CONN_UP:
		ev = KW_EV_READ;
		if (c->write_blocked || c->read_wants_write)
			ev |= KW_EV_WRITE;
		break;
	default:
		return 0;
	}
	return kw_io_modify(c->loop, &c->io, ev);
}

/* tls_error maps a failed SSL call to an error code (the queue is logged, then cleared). */
static int tls_error(struct kw_client *c, int ret, const char *what)
{
	int e = SSL_get_error(c->ssl, ret);
	int rc;

	if (e == SSL_ERROR_ZERO_RETURN) {
		rc = -KW_ECLOSED;
	} else if (e == SSL_ERROR_SYSCALL) {
		rc = errno != 0 ? -errno : -KW_ECLOSED;
	} else {
		unsigned long le = ERR_peek_error();
		if (ERR_GET_LIB(le) == ERR_LIB_SSL &&
		    ERR_GET_REASON(le) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
			rc = -KW_ECLOSED;
		} else {
			char why[512];
			kw_tls_err_string(why, sizeof(why));
			long vr = SSL_get_verify_result(c->ssl);
			kw_log(c->failing ? KW_LOG_DEBUG : KW_LOG_WARN,
			       "keyserver %s: TLS %s failed: %s%s%s", c->addr_text, what,
			       why[0] ? why : "error", vr != X509_V_OK ? ": " : "",
			       vr != X509_V_OK ? X509_verify_cert_error_string(vr) : "");
			rc = -KW_ETLS;
		}
	}
	ERR_clear_error();
	return rc;
}

/*
 * tls_step runs one SSL_write_ex (writing) or SSL_read_ex into/from buf:
 * 1 with *n bytes moved, 0 when TLS must wait (the matching flag set), or
 * an error.
 */
static int tls_step(struct kw_client *c, bool writing, void *buf, size_t len, size_t *n)
{
	ERR_clear_error();
	int r = writing ? SSL_write_ex(c->ssl, buf, len, n) : SSL_read_ex(c->ssl, buf, len, n);
	if (r > 0)
		return 1;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_WRITE) {
		*(writing ? &c->write_blocked : &c->read_wants_write) = true;
		return 0;
	}
	if (e == SSL_ERROR_WANT_READ) {
		if (writing)
			c->write_wants_read = true;
		return 0;
	}
	return tls_error(c, r, writing ? "write" : "read");
}

/* write_out writes queued requests until done or the socket is full; 0 or an error. */
static int write_out(struct kw_client *c)
{
	c->write_blocked = c->write_wants_read = false;
	while (kw_buf_unread(&c->out) > 0) {
		size_t n;
		if (c->ssl != NULL) {
			int r = tls_step(c, true, kw_buf_head(&c->out), kw_buf_unread(&c->out), &n);
			if (r <= 0) {
				if (r < 0)
					return r;
				break;
			}
		} else {
			ssize_t w =
			    send(c->fd, kw_buf_head(&c->out), kw_buf_unread(&c->out), MSG_NOSIGNAL);
			if (w < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK) {
					c->write_blocked = true;
					break;
				}
				return -errno;
			}
			n = (size_t)w;
		}
		kw_buf_consume(&c->out, n);
	}
	return update_events(c);
}

/* read_in appends what the socket has (up to the budget) to c->in; 0 or an error. */
static int read_in(struct kw_client *c)
{
	size_t total = 0;

	c->read_wants_write = false;
	for (;;) {
		/* Past the budget, only drain what TLS already decrypted: epoll won't report it. */
		if (total >= READ_BUDGET && (c->ssl == NULL || SSL_pending(c->ssl) == 0))
			break;
		int rc = kw_buf_reserve(&c->in, READ_CHUNK);
		if (rc < 0)
			return rc;
		size_t room = c->in.cap - c->in.len, n;
		if (c->ssl != NULL) {
			int r = tls_step(c, false, kw_buf_tail(&c->in), room, &n);
			if (r <= 0) {
				if (r < 0)
					return r;
				break;
			}
		} else {
			ssize_t got = recv(c->fd, kw_buf_tail(&c->in), room, 0);
			if (got < 0) {
				if (errno == EINTR)
					continue;
				if (errno == EAGAIN || errno == EWOULDBLOCK)
					break;
				return -errno;
			}
			if (got == 0)
				return -KW_ECLOSED;
			n = (size_t)got;
		}
		c->in.len += n;
		total += n;
	}
	return update_events(c);
}

/* answer completes the request a response names; unknown IDs are dropped. */
static void answer(struct kw_client *c, uint32_t id, const struct kw_msg *m)
{
	uint32_t i = id & c->mask;
	struct slot *s = &c->slots[i];

	if (!s->used || s->id != id || s->gen != c->gen) {
		/* A late answer to a request that timed out: its ID was freed. */
		c->dropped++;
		kw_debug("keyserver %s: dropped answer to unknown request id %u", c->addr_text, id);
		return;
	}

	struct kw_client_result res = {.status = -KW_EPROTO, .opcode = m->opcode};
	if (!m->has_opcode) {
		res.opcode = 0;
	} else if (m->opcode == KW_OP_ERROR) {
		if (m->payload.data != NULL && m->payload.len == 1) {
			res.status = -KW_EREMOTE;
			res.remote_error = m->payload.data[0];
		}
	} else if ((m->opcode == KW_OP_PONG && s->opcode == KW_OP_PING) ||
	           (m->opcode == KW_OP_RESPONSE && s->opcode != KW_OP_PING)) {
		res.status = 0;
		res.payload = m->payload.data;
		res.payload_len = m->payload.len;
	}
	finish(c, i, &res);
}

/* parse_in dispatches every complete frame in c->in; a malformed one kills the connection. */
static void parse_in(struct kw_client *c)
{
	uint64_t gen = c->gen;

	while (!c->freeing && c->gen == gen) {
		size_t avail = kw_buf_unread(&c->in);
		struct kw_header h;
		struct kw_msg m;

		if (kw_header_parse(&h, kw_buf_head(&c->in), avail) < 0)
			break;
		if (h.major != KW_PROTO_MAJOR) {
			kw_warn("keyserver %s: response with protocol version %u.%u", c->addr_text,
			        h.major, h.minor);
			conn_close(c, -KW_EPROTO);
			return;
		}
		size_t flen = KW_HEADER_LEN + (size_t)h.length;
		if (avail < flen)
			break;
		if (kw_msg_parse(&m, kw_buf_head(&c->in) + KW_HEADER_LEN, h.length) < 0) {
			kw_warn("keyserver %s: malformed response (id %u)", c->addr_text, h.id);
			conn_close(c, -KW_EPROTO);
			return;
		}
		answer(c, h.id, &m);
		/* The callback may have closed the connection, which emptied c->in. */
		if (c->freeing || c->gen != gen)
			return;
		kw_buf_consume(&c->in, flen);
	}
	if (!c->freeing && c->gen == gen && c->in.off > 0 && c->in.cap - c->in.len < READ_CHUNK)
		kw_buf_compact(&c->in);
}

static int become_up(struct kw_client *c)
{
	c->state = CONN_UP;
	kw_timer_stop(c->loop, &c->conn_timer);
	if (c->failing)
		kw_info("keyserver %s: connected again", c->addr_text);
	c->failing = false;
	return write_out(c);
}

static bool is_ip_literal(const char *name)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, name, buf) == 1 || inet_pton(AF_INET6, name, buf) == 1;
}

static int tls_start(struct kw_client *c)
{
	const char *name = c->server_name != NULL ? c->server_name : c->addr.host;

	c->ssl = SSL_new(c->ssl_ctx);
	if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
		goto err;
	SSL_set_connect_state(c->ssl);
	SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	/* The link is long-lived and busy: keep the record buffers. */
	SSL_clear_mode(c->ssl, SSL_MODE_RELEASE_BUFFERS);
	SSL_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
	if (is_ip_literal(name)) {
		/* RFC 6066: no SNI for an IP address; the certificate must name the IP. */
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), name) != 1)
			goto err;
	} else {
		if (SSL_set_tlsext_host_name(c->ssl, name) != 1 || SSL_set1_host(c->ssl, name) != 1)
			goto err;
	}
	c->state = CONN_HANDSHAKE;
	return 0;
err:
	kw_log_openssl(KW_LOG_WARN, "keyless client: cannot set up TLS");
	return -KW_ETLS;
}

static int tls_handshake(struct kw_client *c)
{
	ERR_clear_error();
	int r = SSL_do_handshake(c->ssl);
	if (r == 1) {
		/* SSL_VERIFY_PEER already enforced this; say it again where it matters. */
		if (SSL_get0_peer_certificate(c->ssl) == NULL ||
		    SSL_get_verify_result(c->ssl) != X509_V_OK) {
			kw_warn("keyserver %s: certificate not verified", c->addr_text);
			return -KW_ETLS;
		}
		return become_up(c);
	}
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		c->hs_want_write = e == SSL_ERROR_WANT_WRITE;
		return update_events(c);
	}
	return tls_error(c, r, "handshake");
}

static int on_connected(struct kw_client *c)
{
	int soerr = 0;
	socklen_t len = sizeof(soerr);

	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
		return -errno;
	if (soerr != 0)
		return -soerr;
	if (c->ssl_ctx == NULL)
		return become_up(c);
	int rc = tls_start(c);
	if (rc < 0)
		return rc;
	return tls_handshake(c);
}

static int handle_up(struct kw_client *c, unsigned events)
{
	uint64_t gen = c->gen;
	int rc;

	if ((events & KW_EV_WRITE) || (c->write_wants_read && (events & KW_EV_READ))) {
		rc = write_out(c);
		if (rc < 0)
			return rc;
	}
	if ((events & (KW_EV_READ | KW_EV_ERROR)) ||
	    (c->read_wants_write && (events & KW_EV_WRITE))) {
		rc = read_in(c);
		/* Answers that arrived before an error or EOF still count. */
		parse_in(c);
		if (rc < 0 && !c->freeing && c->gen == gen)
			return rc;
	}
	return 0;
}

static void on_io(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kw_client *c = arg;
	int rc = 0;

	check_magic(c);
	switch (c->state) {
	case CONN_CONNECTING:
		rc = on_connected(c);
		break;
	case CONN_HANDSHAKE:
		rc = tls_handshake(c);
		break;
	case CONN_UP:
		rc = handle_up(c, events);
		break;
	case CONN_DOWN:
		return;
	}
	if (c->freeing)
		return;
	if (rc < 0)
		conn_close(c, rc);
	complete_due(c);
}

static void on_conn_timer(struct kw_loop *loop, void *arg)
{
	struct kw_client *c = arg;

	check_magic(c);
	conn_close(c, -KW_ETIMEOUT);
	complete_due(c);
}

static void on_deadline(struct kw_loop *loop, void *arg)
{
	struct kw_client *c = arg;

	check_magic(c);
	complete_due(c);
}

static void on_hook(struct kw_loop *loop, void *arg)
{
	struct kw_client *c = arg;

	check_magic(c);
	kw_hook_remove(loop, &c->hook);
	if (c->state != CONN_UP || c->write_blocked || c->write_wants_read)
		return;
	int rc = write_out(c);
	if (rc < 0) {
		conn_close(c, rc);
		complete_due(c);
	}
}

static int conn_open(struct kw_client *c)
{
	int fd = kw_connect(&c->addr);
	if (fd < 0)
		return fd;
	int rc = kw_io_start(c->loop, &c->io, fd, KW_EV_WRITE);
	if (rc < 0) {
		close(fd);
		return rc;
	}
	c->fd = fd;
	c->state = CONN_CONNECTING;
	rc = kw_timer_start_at(c->loop, &c->conn_timer, kw_now_ns() + c->connect_timeout_ns);
	if (rc < 0) {
		conn_close(c, rc);
		return rc;
	}
	return 0;
}

/* ---- public ---- */

int kw_client_new(struct kw_loop *loop, const struct kw_client_config *cfg, struct kw_client **out)
{
	struct kw_client *c = NULL;
	unsigned max = cfg->max_inflight ? cfg->max_inflight : 1000;
	uint64_t timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 10000;

	*out = NULL;
	if (!cfg->addr.is_unix && cfg->ssl_ctx == NULL)
		return -EINVAL; /* keyless over TCP is always mutual TLS */
	if (max > (1u << 30))
		return -EINVAL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->magic = CLIENT_MAGIC;
	c->loop = loop;
	kw_buf_set_secret(&c->in); /* answers carry signatures and decrypted premaster blocks */
	c->addr = cfg->addr;
	kw_addr_format(&c->addr, c->addr_text, sizeof(c->addr_text));
	c->timeout_ns = timeout_ms * 1000000u;
	c->connect_timeout_ns =
	    (cfg->connect_timeout_ms ? cfg->connect_timeout_ms : timeout_ms) * 1000000u;
	c->max_inflight = max;
	c->fd = -1;
	c->head = c->tail = NIL;

	uint32_t nslots = 16;
	while (nslots < 2 * max)
		nslots *= 2;
	c->mask = nslots - 1;
	c->slots = calloc(nslots, sizeof(*c->slots));
	if (c->slots == NULL)
		goto nomem;
	if (cfg->server_name != NULL && (c->server_name = strdup(cfg->server_name)) == NULL)
		goto nomem;
	if (!cfg->addr.is_unix) {
		SSL_CTX_up_ref(cfg->ssl_ctx);
		c->ssl_ctx = cfg->ssl_ctx;
	}
	kw_io_init(&c->io, on_io, c);
	kw_timer_init(&c->deadline, on_deadline, c);
	kw_timer_init(&c->conn_timer, on_conn_timer, c);
	kw_hook_init(&c->hook, on_hook, c);
	*out = c;
	return 0;
nomem:
	free(c->slots);
	free(c);
	return -ENOMEM;
}

static void client_destroy(void *p)
{
	struct kw_client *c = p;

	kw_buf_cleanup(&c->out);
	kw_buf_cleanup(&c->in);
	free(c->slots);
	free(c->server_name);
	SSL_CTX_free(c->ssl_ctx);
	c->magic = 0;
	free(c);
}

void kw_client_forget_fd(struct kw_client *c)
{
	if (c == NULL)
		return;
	if (c->fd >= 0)
		(void)close(c->fd);
	c->fd = -1;
	c->ssl = NULL; /* leaked: freeing it could take locks held at fork */
}

void kw_client_free(struct kw_client *c)
{
	if (c == NULL)
		return;
	check_magic(c);
	if (c->freeing)
		return;
	c->freeing = true;
	conn_close(c, -KW_ECANCELED);
	/* Callbacks here may submit (refused: freeing) but add nothing to the list. */
	while (c->head != NIL)
		finish_error(c, c->head, -KW_ECANCELED);
	kw_timer_stop(c->loop, &c->deadline);
	kw_timer_stop(c->loop, &c->conn_timer);
	kw_hook_remove(c->loop, &c->hook);
	/* We may be inside one of our own callbacks, whose callers still look at c. */
	if (kw_loop_defer_free(c->loop, client_destroy, c) < 0)
		kw_error("keyless client %s: leaked (out of memory)", c->addr_text);
}

int kw_client_submit(struct kw_client *c, const struct kw_msg *req, kw_client_cb cb, void *arg,
                     uint32_t *id_out)
{
	check_magic(c);
	if (c->freeing)
		return -KW_ECANCELED;
	if (cb == NULL)
		return -EINVAL;
	if (c->inflight >= c->max_inflight)
		return -EAGAIN;

	/* At most max_inflight of 2*max_inflight slots are used: a free one is near. */
	uint32_t id = c->next_id;
	while (c->slots[id & c->mask].used)
		id++;
	size_t before = c->out.len;
	int rc = kw_msg_encode(&c->out, id, req, true);
	if (rc < 0)
		return rc;

	uint32_t i = id & c->mask;
	struct slot *s = &c->slots[i];
	uint64_t now = kw_now_ns();
	if (!kw_timer_active(&c->deadline)) {
		rc = kw_timer_start_at(c->loop, &c->deadline, now + c->timeout_ns);
		if (rc < 0) {
			c->out.len = before;
			return rc;
		}
	}
	c->next_id = id + 1;
	s->used = true;
	s->id = id;
	s->gen = c->gen;
	s->submit_ns = now;
	s->cb = cb;
	s->arg = arg;
	s->opcode = req->has_opcode ? req->opcode : 0;
	s->status = 0;
	fifo_append(c, i);
	c->inflight++;
	if (id_out != NULL)
		*id_out = id;

	if (c->state == CONN_DOWN) {
		rc = conn_open(c);
		if (rc < 0) {
			/* Reported through the callback, from the loop, like any failure. */
			kw_log(c->failing ? KW_LOG_DEBUG : KW_LOG_WARN,
			       "keyserver %s: cannot connect: %s", c->addr_text, kw_strerror(rc));
			conn_close(c, rc);
		}
	} else if (c->state == CONN_UP && !c->write_blocked && !c->write_wants_read) {
		kw_hook_add(c->loop, &c->hook);
	}
	return 0;
}

void kw_client_flush(struct kw_client *c)
{
	check_magic(c);
	if (c->freeing || c->state != CONN_UP || c->write_blocked || c->write_wants_read)
		return;
	int rc = write_out(c);
	if (rc < 0)
		conn_close(c, rc); /* its requests complete from the loop */
}

unsigned kw_client_inflight(const struct kw_client *c)
{
	return c->inflight;
}

int kw_client_connected(const struct kw_client *c)
{
	return c->state == CONN_UP;
}
