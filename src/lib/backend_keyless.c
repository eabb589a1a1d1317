/*
 * backend_keyless.c - the keyless offload backend (see keyway/backend_keyless.h).
 *
 * An op held here is a request (struct req): its deadline timer, the set of
 * keyservers it has tried, and the attempt in flight. An attempt (struct
 * attempt) is the kw_client callback argument of one try; giving a try up
 * only clears its req pointer, and the client's eventual callback (answer,
 * timeout or cancel) frees it. That is the seam for attempt timeouts, health
 * probes and fallback keys: each decides what to do with a req whose try
 * failed or was given up, in retry() and on_deadline().
 *
 * Counts drop before kw_op_complete, so a done callback that submits again
 * (an application woken for capacity) finds the slot free.
 */
#include "keyway/backend_keyless.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/client.h"
#include "keyway/err.h"
#include "keyway/log.h"

/* A keyserver whose link failed goes to the back of the choice for this long. */
#define DOWN_NS (1000ull * 1000 * 1000)

struct kl_backend;

struct server {
	struct kw_client **conns;
	unsigned inflight; /* attempts in flight, abandoned ones included */
	unsigned next_conn;
	uint64_t down_until_ns;
	char *name;
};

struct req {
	struct kw_op *op;
	struct kl_backend *b;
	struct attempt *att;   /* the try in flight; NULL while backlogged or between tries */
	struct kw_timer timer; /* the op's deadline, or "now" to complete with `final` */
	uint64_t deadline_ns;
	uint64_t tried; /* bit i: keyserver i was tried */
	int pinned;     /* the only keyserver to use, or -1 */
	int last_error; /* the last link failure, for the final status */
	int final;      /* status to complete with from the timer (never inside submit) */
	bool finishing; /* final is set */
	bool backlogged;
	struct req *prev, *next; /* every req held */
	struct req *bl_next;     /* backlog, oldest first */
};

struct attempt {
	struct req *req; /* NULL once given up: the answer is dropped */
	struct kl_backend *b;
	unsigned server;
};

struct kl_backend {
	struct kw_backend base; /* first: the ops pointer */
	struct kw_loop *loop;
	struct server *servers;
	size_t nservers;
	unsigned connections;
	unsigned conn_max;
	unsigned max_inflight;
	uint64_t timeout_ns;
	SSL_CTX *ssl_ctx;
	struct kw_keyless_counters *counters;

	unsigned inflight[KW_OPK_COUNT];
	unsigned total;
	struct req *reqs;
	struct req *bl_head, *bl_tail;
	unsigned rr; /* rotates the first keyserver looked at */
	bool freeing;
	struct kw_keyless_stats st;
};

static const struct kw_backend_ops keyless_ops;

static struct kl_backend *kl(struct kw_backend *b)
{
	return (struct kl_backend *)b;
}

/* ---- completion ---- */

static void backlog_unlink(struct kl_backend *b, struct req *r)
{
	struct req **pp = &b->bl_head, *prev = NULL;
	for (; *pp != NULL; prev = *pp, pp = &(*pp)->bl_next) {
		if (*pp == r) {
			*pp = r->bl_next;
			if (b->bl_tail == r)
				b->bl_tail = prev;
			break;
		}
	}
	r->bl_next = NULL;
	r->backlogged = false;
}

static void complete(struct req *r, int status)
{
	struct kl_backend *b = r->b;
	struct kw_op *op = r->op;

	kw_timer_stop(b->loop, &r->timer);
	if (r->att != NULL)
		r->att->req = NULL;
	if (r->backlogged)
		backlog_unlink(b, r);
	if (r->prev != NULL)
		r->prev->next = r->next;
	else
		b->reqs = r->next;
	if (r->next != NULL)
		r->next->prev = r->prev;
	b->inflight[op->kind]--;
	b->total--;
	b->st.completed++;
	free(r);
	kw_op_complete(op, status);
	kw_op_unref(op); /* the backend's reference */
}

/* finish_later completes r from the loop: never inside submit (the kw_backend contract). */
static void finish_later(struct req *r, int status)
{
	r->final = status;
	r->finishing = true;
	if (kw_timer_start_at(r->b->loop, &r->timer, 0) < 0)
		complete(r, status); /* the heap cannot grow: better now than never */
}

/* ---- choosing and sending ---- */

static bool server_full(const struct kl_backend *b, const struct server *s)
{
	return s->inflight >= b->connections * b->conn_max;
}

/*
 * pick returns the keyserver r should try next: untried, not full, fewest
 * attempts in flight, those that failed recently only when nothing else is
 * left. -1: none is left to try; -2: the candidates are all full (wait).
 */
static int pick(struct kl_backend *b, struct req *r, uint64_t now)
{
	int best = -1, best_down = -1;
	bool full = false;

	if (r->pinned >= 0) {
		if (r->tried & (1ull << r->pinned))
			return -1;
		return server_full(b, &b->servers[r->pinned]) ? -2 : r->pinned;
	}
	for (size_t k = 0; k < b->nservers; k++) {
		size_t i = (b->rr + k) % b->nservers;
		struct server *s = &b->servers[i];
		if (r->tried & (1ull << i))
			continue;
		if (server_full(b, s)) {
			full = true;
			continue;
		}
		int *slot = s->down_until_ns > now ? &best_down : &best;
		if (*slot < 0 || s->inflight < b->servers[*slot].inflight)
			*slot = (int)i;
	}
	if (best >= 0)
		return best;
	if (best_down >= 0)
		return best_down;
	return full ? -2 : -1;
}

static void on_answer(void *arg, const struct kw_client_result *res);

/* send_to sends r to keyserver i on its least busy connection: 0, -EAGAIN or an error. */
static int send_to(struct kl_backend *b, struct req *r, unsigned i)
{
	static const uint8_t empty[1];
	struct server *s = &b->servers[i];
	struct kw_op *op = r->op;
	struct kw_msg m = {.has_opcode = true, .opcode = op->opcode};
	struct kw_client *c = NULL;
	int rc;

	for (unsigned k = 0; k < b->connections; k++) {
		struct kw_client *cand = s->conns[(s->next_conn + k) % b->connections];
		if (kw_client_inflight(cand) >= b->conn_max)
			continue;
		if (c == NULL || kw_client_inflight(cand) < kw_client_inflight(c))
			c = cand;
	}
	if (c == NULL)
		return -EAGAIN;
	s->next_conn = (s->next_conn + 1) % b->connections;

	struct attempt *a = malloc(sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->req = r;
	a->b = b;
	a->server = i;
	m.payload.data = op->in != NULL ? op->in : empty;
	m.payload.len = op->in_len;
	if (op->opcode != KW_OP_PING) {
		m.has_ski = true;
		memcpy(m.ski, op->ski, KW_SKI_LEN);
	}
	if ((rc = kw_client_submit(c, &m, on_answer, a, NULL)) < 0) {
		free(a);
		return rc;
	}
	s->inflight++;
	r->att = a;
	r->tried |= 1ull << i;
	if (op->attempts++ > 0) {
		b->st.retries++;
		if (b->counters != NULL)
			atomic_fetch_add_explicit(&b->counters->retries, 1, memory_order_relaxed);
		if (op->server != (int)i) {
			b->st.failovers++;
			if (b->counters != NULL)
				atomic_fetch_add_explicit(&b->counters->failovers, 1,
				                          memory_order_relaxed);
		}
	}
	op->server = (int)i;
	return 0;
}

/* final_status is what r reports once no keyserver is left to try. */
static int final_status(const struct req *r)
{
	if (r->op->remote_error != 0)
		return -KW_EREMOTE; /* a keyserver we reached said why: the most useful answer */
	return r->last_error != 0 ? r->last_error : -KW_ECLOSED;
}

static void backlog_push(struct kl_backend *b, struct req *r)
{
	r->backlogged = true;
	r->bl_next = NULL;
	if (b->bl_tail != NULL)
		b->bl_tail->bl_next = r;
	else
		b->bl_head = r;
	b->bl_tail = r;
}

/*
 * dispatch sends r to the next keyserver it may use. 0: sent, or waiting in
 * the backlog for a connection with room; negative: the status r must
 * complete with (nothing is left to try).
 */
static int dispatch(struct kl_backend *b, struct req *r)
{
	if (b->freeing)
		return -KW_ECANCELED;
	for (;;) {
		uint64_t now = kw_now_ns();
		if (now >= r->deadline_ns)
			return r->last_error != 0 ? r->last_error : -KW_ETIMEOUT;
		int i = pick(b, r, now);
		if (i == -1)
			return final_status(r);
		if (i == -2) {
			backlog_push(b, r);
			return 0;
		}
		int rc = send_to(b, r, (unsigned)i);
		if (rc == 0)
			return 0;
		if (rc == -EAGAIN) {
			backlog_push(b, r);
			return 0;
		}
		/* Cannot even be queued there (too big, no memory): the others won't do better. */
		r->tried |= 1ull << i;
		r->last_error = rc;
		return rc;
	}
}

/* drain_backlog gives each backlogged req (as of now) one more chance. */
static void drain_backlog(struct kl_backend *b)
{
	struct req *r = b->bl_head, *last = b->bl_tail;

	if (r == NULL)
		return;
	b->bl_head = b->bl_tail = NULL;
	while (r != NULL) {
		struct req *next = r == last ? NULL : r->bl_next;
		r->bl_next = NULL;
		r->backlogged = false;
		/* Still no room: it goes to the back again. */
		int rc = dispatch(b, r);
		if (rc < 0)
			complete(r, rc);
		r = next;
	}
}

/* retry moves r on after a failed try. */
static void retry(struct kl_backend *b, struct req *r)
{
	int rc = dispatch(b, r);
	if (rc < 0)
		complete(r, rc);
}

/* is_link_failure tells failures of the link (another keyserver may do) from answers. */
static bool is_link_failure(int status)
{
	return status != 0 && status != -KW_EREMOTE && status != -KW_ETIMEOUT &&
	       status != -KW_ECANCELED;
}

static void on_answer(void *arg, const struct kw_client_result *res)
{
	struct attempt *a = arg;
	struct kl_backend *b = a->b;
	struct req *r = a->req;
	unsigned server = a->server;

	b->servers[server].inflight--;
	free(a);
	if (r == NULL) {
		b->st.dropped++;
		drain_backlog(b);
		return;
	}
	r->att = NULL;
	struct kw_op *op = r->op;
	int status = res->status;
	if (status == 0) {
		if (res->payload_len > KW_OP_OUT_MAX) {
			complete(r, -KW_EPROTO);
		} else {
			/* Only ours to write while in flight: a completed op belongs to its owner.
			 */
			if (atomic_load_explicit(&op->state, memory_order_acquire) ==
			    KW_OP_INFLIGHT) {
				if (res->payload_len > 0)
					memcpy(op->out, res->payload, res->payload_len);
				op->out_len = res->payload_len;
			}
			complete(r, 0);
		}
	} else if (status == -KW_EREMOTE) {
		op->remote_error = res->remote_error;
		/* Keys may be spread over keyservers: another one may hold it. */
		if (res->remote_error == KW_ERR_KEY_NOT_FOUND && r->pinned < 0)
			retry(b, r);
		else
			complete(r, -KW_EREMOTE);
	} else if (is_link_failure(status)) {
		b->servers[server].down_until_ns = kw_now_ns() + DOWN_NS;
		r->last_error = status;
		retry(b, r);
	} else {
		if (status == -KW_ETIMEOUT)
			b->st.timeouts++;
		complete(r, status);
	}
	drain_backlog(b);
}

static void on_timer(struct kw_loop *loop, void *arg)
{
	struct req *r = arg;
	struct kl_backend *b = r->b;

	if (r->finishing) {
		complete(r, r->final);
		return;
	}
	/* The deadline. A try still in flight is given up: its answer will be dropped. */
	b->st.timeouts++;
	complete(r, is_link_failure(r->last_error) ? r->last_error : -KW_ETIMEOUT);
	drain_backlog(b);
}

/* ---- the interface ---- */

static int accept_op(struct kl_backend *b, struct kw_op *op, int pinned)
{
	if (b->freeing)
		return -KW_ECANCELED;
	if ((unsigned)op->kind >= KW_OPK_COUNT)
		return -EINVAL;
	if (op->in_len > KW_MAX_BODY - 256)
		return -EMSGSIZE;
	if (b->total >= b->max_inflight) {
		b->st.eagain++;
		return -EAGAIN;
	}
	struct req *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return -ENOMEM;
	uint64_t now = kw_now_ns();
	r->op = op;
	r->b = b;
	r->pinned = pinned;
	r->deadline_ns = op->deadline_ns != 0 ? op->deadline_ns : now + b->timeout_ns;
	kw_timer_init(&r->timer, on_timer, r);
	if (kw_timer_start_at(b->loop, &r->timer, r->deadline_ns) < 0) {
		free(r);
		return -ENOMEM;
	}
	kw_op_accept(op);
	op->submit_ns = now;
	op->attempts = 0;
	op->server = -1;
	op->remote_error = 0;
	r->next = b->reqs;
	if (b->reqs != NULL)
		b->reqs->prev = r;
	b->reqs = r;
	b->inflight[op->kind]++;
	b->total++;
	b->st.submitted++;
	b->rr++;

	int rc = dispatch(b, r);
	if (rc < 0)
		finish_later(r, rc);
	return 0;
}

static int keyless_submit(struct kw_backend *base, struct kw_op *op)
{
	return accept_op(kl(base), op, -1);
}

int kw_backend_keyless_submit_to(struct kw_backend *base, struct kw_op *op, size_t server)
{
	if (!kw_backend_is_keyless(base) || server >= kl(base)->nservers)
		return -EINVAL;
	return accept_op(kl(base), op, (int)server);
}

static int keyless_poll(struct kw_backend *b, unsigned max)
{
	return 0; /* answers are read on socket readiness, in the loop */
}

static unsigned keyless_inflight(const struct kw_backend *base, enum kw_op_kind kind)
{
	const struct kl_backend *b = (const struct kl_backend *)base;
	return (unsigned)kind < KW_OPK_COUNT ? b->inflight[kind] : 0;
}

static void keyless_free(struct kw_backend *base)
{
	struct kl_backend *b = kl(base);

	b->freeing = true;
	/* Freeing a client fails its requests with -KW_ECANCELED: their ops complete here. */
	for (size_t i = 0; i < b->nservers; i++)
		for (unsigned k = 0; b->servers[i].conns != NULL && k < b->connections; k++)
			kw_client_free(b->servers[i].conns[k]);
	while (b->reqs != NULL)
		complete(b->reqs, -KW_ECANCELED);
	for (size_t i = 0; i < b->nservers; i++) {
		free(b->servers[i].conns);
		free(b->servers[i].name);
	}
	free(b->servers);
	SSL_CTX_free(b->ssl_ctx);
	free(b);
}

static const struct kw_backend_ops keyless_ops = {
    .name = "keyless",
    .submit = keyless_submit,
    .poll = keyless_poll,
    .inflight = keyless_inflight,
    .free = keyless_free,
};

bool kw_backend_is_keyless(const struct kw_backend *b)
{
	return b != NULL && b->ops == &keyless_ops;
}

const char *kw_backend_keyless_server_name(const struct kw_backend *base, size_t i)
{
	const struct kl_backend *b = (const struct kl_backend *)base;
	if (!kw_backend_is_keyless(base) || i >= b->nservers)
		return "keyserver";
	return b->servers[i].name;
}

int kw_backend_keyless_stats(const struct kw_backend *base, struct kw_keyless_stats *out)
{
	if (!kw_backend_is_keyless(base))
		return -EINVAL;
	*out = ((const struct kl_backend *)base)->st;
	return 0;
}

int kw_backend_keyless_new(struct kw_loop *loop, const struct kw_keyless_config *cfg,
                           struct kw_backend **out)
{
	struct kl_backend *b = NULL;
	int rc = -ENOMEM;

	*out = NULL;
	if (cfg->nservers == 0 || cfg->nservers > KW_KEYLESS_MAX_SERVERS || cfg->connections > 64)
		return -EINVAL;
	for (size_t i = 0; i < cfg->nservers; i++)
		if (!cfg->addrs[i].is_unix && cfg->ssl_ctx == NULL)
			return -EINVAL; /* keyless over TCP is always mutual TLS */
	if ((b = calloc(1, sizeof(*b))) == NULL)
		return -ENOMEM;
	b->base.ops = &keyless_ops;
	b->loop = loop;
	b->connections = cfg->connections ? cfg->connections : 2;
	b->conn_max = cfg->conn_max_inflight ? cfg->conn_max_inflight : 1000;
	b->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1024;
	unsigned timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
	b->timeout_ns = (uint64_t)timeout_ms * 1000000u;
	b->counters = cfg->counters;
	if (cfg->ssl_ctx != NULL) {
		SSL_CTX_up_ref(cfg->ssl_ctx);
		b->ssl_ctx = cfg->ssl_ctx;
	}
	b->nservers = cfg->nservers;
	if ((b->servers = calloc(b->nservers, sizeof(*b->servers))) == NULL)
		goto err;
	for (size_t i = 0; i < b->nservers; i++) {
		struct server *s = &b->servers[i];
		char text[300];
		if (cfg->names != NULL && cfg->names[i] != NULL)
			snprintf(text, sizeof(text), "%s", cfg->names[i]);
		else
			kw_addr_format(&cfg->addrs[i], text, sizeof(text));
		if ((s->name = strdup(text)) == NULL ||
		    (s->conns = calloc(b->connections, sizeof(*s->conns))) == NULL)
			goto err;
		for (unsigned k = 0; k < b->connections; k++) {
			struct kw_client_config cc = {
			    .addr = cfg->addrs[i],
			    .ssl_ctx = cfg->addrs[i].is_unix ? NULL : b->ssl_ctx,
			    .server_name = cfg->server_name,
			    .timeout_ms = timeout_ms,
			    .max_inflight = b->conn_max,
			    .connect_timeout_ms = timeout_ms,
			};
			if ((rc = kw_client_new(loop, &cc, &s->conns[k])) < 0)
				goto err;
		}
	}
	*out = &b->base;
	return 0;
err:
	keyless_free(&b->base);
	return rc;
}
