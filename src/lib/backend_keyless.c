/*
 * backend_keyless.c - the keyless offload backend (see keyway/backend_keyless.h).
 *
 * An op held here is a request (struct req): its deadline timer, its attempt
 * timer, the set of keyservers it has tried, and its tries in flight. A try
 * (struct attempt) is the kw_client callback argument of one request; giving
 * a try up only clears its req pointer, and the client's eventual callback
 * (answer, timeout or cancel) frees it. Health probes and idle pings are
 * attempts too, of their own kinds, with no req.
 *
 * What happens to a req whose try failed or was overtaken is decided in
 * retry() (send it elsewhere, wait for a try still in flight, or give up),
 * on_attempt_timer() (hedge to another keyserver) and give_up() (the
 * fallback key, or the failure).
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
#include "keyway/list.h"
#include "keyway/log.h"

#define MS (1000ull * 1000)
#define PROBE_FIRST_MS 100u /* first probe of an unhealthy keyserver */
#define PROBE_MAX_MS 5000u  /* the probe delay doubles up to this */

struct kl_backend;

enum att_kind {
	ATT_OP,    /* a try of a req */
	ATT_PROBE, /* a health probe of an unhealthy keyserver */
	ATT_IDLE,  /* a ping on an idle connection */
};

struct server {
	struct kl_backend *b;
	unsigned idx;
	struct kw_client **conns;
	uint64_t *used_ns; /* per connection: when a request last went out on it */
	unsigned inflight; /* op attempts in flight, abandoned ones included */
	unsigned next_conn;
	bool unhealthy;
	bool probing;       /* a probe is in flight */
	uint64_t failed_ns; /* when it last failed: least recently failed is tried first */
	unsigned backoff_ms;
	struct kw_timer probe_timer;
	char *name;
};

struct req {
	struct kw_op *op;
	struct kl_backend *b;
	struct attempt *atts;      /* tries in flight, newest first; NULL while backlogged */
	struct kw_timer timer;     /* the op's deadline, or "now" to complete with `final` */
	struct kw_timer att_timer; /* the newest try's attempt timeout */
	uint64_t deadline_ns;
	uint64_t tried; /* bit i: keyserver i was tried */
	int pinned;     /* the only keyserver to use, or -1 */
	int last_error; /* the last link failure, for the final status */
	int final;      /* status to complete with from the timer (never inside submit) */
	bool finishing; /* final is set */
	bool backlogged;
	struct kw_list link;    /* in the backend's reqs: every req held */
	struct kw_list bl_link; /* in the backend's backlog while backlogged */
};

struct attempt {
	struct req *req; /* NULL once given up: the answer is dropped (ATT_OP) */
	struct kl_backend *b;
	struct attempt *next; /* in req->atts */
	unsigned server;
	enum att_kind kind;
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
	uint64_t attempt_ns;
	uint64_t idle_ns;
	SSL_CTX *ssl_ctx;
	struct kw_keyset *fallback;
	struct kw_keyless_counters *counters;
	atomic_bool in_fallback; /* without shared counters */
	struct kw_timer idle_timer;

	unsigned inflight[KW_OPK_COUNT];
	unsigned total;
	struct kw_list reqs;    /* every req held (struct req.link) */
	struct kw_list backlog; /* reqs waiting for room (struct req.bl_link), oldest first */
	unsigned rr;            /* rotates the first keyserver looked at */
	bool freeing;
	struct kw_keyless_stats st;
};

static const struct kw_backend_ops keyless_ops;

static struct kl_backend *kl(struct kw_backend *b)
{
	return (struct kl_backend *)b;
}

/* ---- completion ---- */

static void backlog_unlink(struct req *r)
{
	kw_list_del(&r->bl_link);
	r->backlogged = false;
}

static void complete(struct req *r, int status)
{
	struct kl_backend *b = r->b;
	struct kw_op *op = r->op;

	kw_timer_stop(b->loop, &r->timer);
	kw_timer_stop(b->loop, &r->att_timer);
	for (struct attempt *a = r->atts; a != NULL; a = a->next)
		a->req = NULL;
	r->atts = NULL;
	if (r->backlogged)
		backlog_unlink(r);
	kw_list_del(&r->link);
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

/* ---- health ---- */

static void arm_probe(struct kl_backend *b, struct server *s)
{
	if (b->freeing || s->probing)
		return;
	/* Only fails when the heap cannot grow: the next failure tries again. */
	(void)kw_timer_start_at(b->loop, &s->probe_timer,
	                        kw_now_ns() + (uint64_t)s->backoff_ms * MS);
}

/* mark_unhealthy: its link failed or a try went unanswered; probe it until it answers. */
static void mark_unhealthy(struct kl_backend *b, unsigned i, const char *why)
{
	struct server *s = &b->servers[i];

	s->failed_ns = kw_now_ns();
	if (s->unhealthy)
		return;
	s->unhealthy = true;
	s->backoff_ms = PROBE_FIRST_MS;
	b->st.unhealthy++;
	kw_debug("keyserver %s: unhealthy (%s); probing", s->name, why);
	arm_probe(b, s);
}

/* mark_healthy: it answered. */
static void mark_healthy(struct kl_backend *b, unsigned i)
{
	struct server *s = &b->servers[i];

	if (!s->unhealthy)
		return;
	s->unhealthy = false;
	b->st.unhealthy--;
	kw_timer_stop(b->loop, &s->probe_timer);
	kw_debug("keyserver %s: healthy again", s->name);
}

static void on_answer(void *arg, const struct kw_client_result *res);

/* send_ping sends a ping of kind on connection k of keyserver i; 0 or an error. */
static int send_ping(struct kl_backend *b, unsigned i, unsigned k, enum att_kind kind)
{
	static const uint8_t empty[1];
	struct server *s = &b->servers[i];
	struct kw_msg m = {.has_opcode = true, .opcode = KW_OP_PING};
	struct attempt *a = calloc(1, sizeof(*a));
	int rc;

	if (a == NULL)
		return -ENOMEM;
	a->b = b;
	a->server = i;
	a->kind = kind;
	m.payload.data = empty;
	m.payload.len = 0;
	if ((rc = kw_client_submit(s->conns[k], &m, on_answer, a, NULL)) < 0) {
		free(a);
		return rc;
	}
	s->used_ns[k] = kw_now_ns();
	return 0;
}

static void on_probe_timer(struct kw_loop *loop, void *arg)
{
	struct server *s = arg;
	struct kl_backend *b = s->b;

	if (b->freeing || !s->unhealthy || s->probing)
		return;
	unsigned k = s->next_conn % b->connections;
	if (send_ping(b, s->idx, k, ATT_PROBE) < 0) {
		arm_probe(b, s);
		return;
	}
	s->probing = true;
	b->st.probes++;
}

static void on_ping_answer(struct kl_backend *b, unsigned i, enum att_kind kind, int status)
{
	struct server *s = &b->servers[i];

	if (status == 0) {
		mark_healthy(b, i);
	} else if (kind == ATT_PROBE && status != -KW_ECANCELED) {
		s->backoff_ms = s->backoff_ms * 2 > PROBE_MAX_MS ? PROBE_MAX_MS : s->backoff_ms * 2;
	}
	/* A failed idle ping says little (the keyserver may just have closed an idle link). */
	if (kind == ATT_PROBE) {
		s->probing = false;
		if (s->unhealthy)
			arm_probe(b, s);
	}
}

/* on_idle_timer pings connections nothing went out on for idle_ns. */
static void on_idle_timer(struct kw_loop *loop, void *arg)
{
	struct kl_backend *b = arg;
	uint64_t now = kw_now_ns();
	bool any = false;

	if (b->freeing)
		return;
	for (size_t i = 0; i < b->nservers; i++) {
		struct server *s = &b->servers[i];
		for (unsigned k = 0; k < b->connections; k++) {
			if (!kw_client_connected(s->conns[k]))
				continue;
			any = true;
			if (kw_client_inflight(s->conns[k]) == 0 &&
			    now - s->used_ns[k] >= b->idle_ns &&
			    send_ping(b, (unsigned)i, k, ATT_IDLE) == 0)
				b->st.idle_pings++;
		}
	}
	/* Nothing connected: the next request re-arms it (a quiet process sleeps). */
	if (any)
		(void)kw_timer_start_at(b->loop, &b->idle_timer, now + b->idle_ns / 2);
}

/* ---- fallback ---- */

static void fallback_state(struct kl_backend *b, bool on)
{
	atomic_bool *flag = b->counters != NULL ? &b->counters->in_fallback : &b->in_fallback;

	if (atomic_load_explicit(flag, memory_order_relaxed) == on ||
	    atomic_exchange_explicit(flag, on, memory_order_relaxed) == on)
		return;
	if (on)
		kw_warn("no keyserver answered in time: using the local fallback keys until one "
		        "does");
	else
		kw_info("keyservers answering again: fallback keys no longer used");
}

/*
 * give_up completes r when no keyserver can answer it: with its fallback key
 * when it has one and no keyserver gave an answer, else with status.
 */
static void give_up(struct req *r, int status)
{
	struct kl_backend *b = r->b;
	struct kw_op *op = r->op;
	EVP_PKEY *key = NULL;

	if (b->fallback != NULL && status != 0 && status != -KW_EREMOTE &&
	    status != -KW_ECANCELED && r->pinned < 0 && op->opcode != KW_OP_PING &&
	    atomic_load_explicit(&op->state, memory_order_acquire) == KW_OPSTATE_INFLIGHT)
		key = kw_keyset_find(b->fallback, op->ski);
	if (key == NULL) {
		complete(r, status);
		return;
	}
	op->pkey = key;
	int rc = kw_op_compute(op);
	op->pkey = NULL;
	if (rc < 0) {
		complete(r, status); /* what the keyservers did says more than the local error */
		return;
	}
	op->remote_error = 0;
	b->st.fallbacks++;
	if (b->counters != NULL)
		atomic_fetch_add_explicit(&b->counters->fallbacks, 1, memory_order_relaxed);
	fallback_state(b, true);
	complete(r, 0);
}

/* ---- choosing and sending ---- */

static bool server_full(const struct kl_backend *b, const struct server *s)
{
	return s->inflight >= b->connections * b->conn_max;
}

/*
 * pick returns the keyserver r should try next: untried, not full; of the
 * healthy ones the one with the fewest attempts in flight, else the
 * unhealthy one that failed least recently. -1: none is left to try; -2:
 * the candidates are all full (wait).
 */
static int pick(struct kl_backend *b, struct req *r)
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
		if (!s->unhealthy) {
			if (best < 0 || s->inflight < b->servers[best].inflight)
				best = (int)i;
		} else if (best_down < 0 || s->failed_ns < b->servers[best_down].failed_ns) {
			best_down = (int)i;
		}
	}
	if (best >= 0)
		return best;
	if (best_down >= 0)
		return best_down;
	return full ? -2 : -1;
}

static void arm_idle(struct kl_backend *b, uint64_t now)
{
	if (!kw_timer_active(&b->idle_timer))
		(void)kw_timer_start_at(b->loop, &b->idle_timer, now + b->idle_ns / 2);
}

/* send_to sends r to keyserver i on its least busy connection: 0, -EAGAIN or an error. */
static int send_to(struct kl_backend *b, struct req *r, unsigned i)
{
	static const uint8_t empty[1];
	struct server *s = &b->servers[i];
	struct kw_op *op = r->op;
	struct kw_msg m = {.has_opcode = true, .opcode = op->opcode};
	unsigned ck = 0;
	bool found = false;
	int rc;

	for (unsigned k = 0; k < b->connections; k++) {
		unsigned cand = (s->next_conn + k) % b->connections;
		if (kw_client_inflight(s->conns[cand]) >= b->conn_max)
			continue;
		if (!found || kw_client_inflight(s->conns[cand]) < kw_client_inflight(s->conns[ck]))
			ck = cand;
		found = true;
	}
	if (!found)
		return -EAGAIN;
	s->next_conn = (s->next_conn + 1) % b->connections;

	struct attempt *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->req = r;
	a->b = b;
	a->server = i;
	a->kind = ATT_OP;
	m.payload.data = op->in != NULL ? op->in : empty;
	m.payload.len = op->in_len;
	if (op->opcode != KW_OP_PING) {
		m.has_ski = true;
		memcpy(m.ski, op->ski, KW_SKI_LEN);
	}
	if ((rc = kw_client_submit(s->conns[ck], &m, on_answer, a, NULL)) < 0) {
		free(a);
		return rc;
	}
	uint64_t now = kw_now_ns();
	s->used_ns[ck] = now;
	s->inflight++;
	a->next = r->atts;
	r->atts = a;
	r->tried |= 1ull << i;
	/* Only fails when the heap cannot grow: the deadline still bounds the op. */
	(void)kw_timer_start_at(b->loop, &r->att_timer, now + b->attempt_ns);
	arm_idle(b, now);
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
	kw_timer_stop(b->loop, &r->att_timer);
	r->backlogged = true;
	kw_list_add_tail(&b->backlog, &r->bl_link);
}

/*
 * dispatch sends r to the next keyserver it may use. 0: sent, or waiting
 * (for a connection with room, in the backlog; or, when a try is still in
 * flight, for that try); negative: nothing is left to try, the status r
 * ends with unless a try in flight answers.
 */
static int dispatch(struct kl_backend *b, struct req *r)
{
	if (b->freeing)
		return -KW_ECANCELED;
	if (kw_now_ns() >= r->deadline_ns)
		return r->last_error != 0 ? r->last_error : -KW_ETIMEOUT;
	int i = pick(b, r);
	if (i == -1)
		return final_status(r);
	int rc = i == -2 ? -EAGAIN : send_to(b, r, (unsigned)i);
	if (rc == 0)
		return 0;
	if (rc == -EAGAIN) {
		/* A hedge is not worth a wait: the try in flight goes on. */
		if (r->atts == NULL)
			backlog_push(b, r);
		return 0;
	}
	/* Cannot even be queued there (too big, no memory): the others won't do better. */
	r->tried |= 1ull << i;
	r->last_error = rc;
	return rc;
}

/* retry moves r on after a failed try: elsewhere, or wait for a try in flight, or give up. */
static void retry(struct kl_backend *b, struct req *r)
{
	int rc = dispatch(b, r);
	if (rc < 0 && r->atts == NULL)
		give_up(r, rc);
}

/* drain_backlog gives each backlogged req (as of now) one more chance. */
static void drain_backlog(struct kl_backend *b)
{
	struct kw_list todo;
	struct kw_list *n;

	kw_list_move_all(&todo, &b->backlog);
	while ((n = kw_list_first(&todo)) != NULL) {
		struct req *r = kw_container_of(n, struct req, bl_link);
		backlog_unlink(r);
		/* Still no room: it goes to the back again. */
		retry(b, r);
	}
}

/* is_link_failure tells failures of the link (another keyserver may do) from answers. */
static bool is_link_failure(int status)
{
	return status != 0 && status != -KW_EREMOTE && status != -KW_ETIMEOUT &&
	       status != -KW_ECANCELED;
}

static void unlink_attempt(struct req *r, struct attempt *a)
{
	for (struct attempt **pp = &r->atts; *pp != NULL; pp = &(*pp)->next) {
		if (*pp == a) {
			*pp = a->next;
			break;
		}
	}
	a->req = NULL;
}

static void on_answer(void *arg, const struct kw_client_result *res)
{
	struct attempt *a = arg;
	struct kl_backend *b = a->b;
	struct req *r = a->req;
	unsigned server = a->server;
	enum att_kind kind = a->kind;
	int status = res->status;

	if (r != NULL)
		unlink_attempt(r, a);
	free(a);
	if (kind != ATT_OP) {
		on_ping_answer(b, server, kind, status);
		return;
	}
	b->servers[server].inflight--;
	/* Any answer, even a late one, shows the keyserver works. */
	if (status == 0 || status == -KW_EREMOTE)
		mark_healthy(b, server);
	else if (is_link_failure(status))
		mark_unhealthy(b, server, kw_strerror(status));
	else if (status == -KW_ETIMEOUT)
		mark_unhealthy(b, server, "no answer");
	if (r == NULL) {
		b->st.dropped++;
		drain_backlog(b);
		return;
	}
	struct kw_op *op = r->op;
	if (status == 0) {
		if (res->payload_len > KW_RESULT_MAX) {
			complete(r, -KW_EPROTO);
		} else {
			/* Ours to write only while in flight: a completed op is its owner's. */
			if (atomic_load_explicit(&op->state, memory_order_acquire) ==
			    KW_OPSTATE_INFLIGHT) {
				if (res->payload_len > 0)
					memcpy(op->out, res->payload, res->payload_len);
				op->out_len = res->payload_len;
			}
			if (b->fallback != NULL)
				fallback_state(b, false);
			complete(r, 0);
		}
	} else if (status == -KW_EREMOTE) {
		op->remote_error = res->remote_error;
		/* Keys may be spread over keyservers: another one may hold it. */
		if (res->remote_error == KW_ERR_KEY_NOT_FOUND && r->pinned < 0)
			retry(b, r);
		else
			complete(r, -KW_EREMOTE);
	} else if (is_link_failure(status) || status == -KW_ETIMEOUT) {
		if (is_link_failure(status))
			r->last_error = status;
		retry(b, r);
	} else {
		complete(r, status);
	}
	drain_backlog(b);
}

/* on_attempt_timer: the newest try went unanswered; hedge to another keyserver. */
static void on_attempt_timer(struct kw_loop *loop, void *arg)
{
	struct req *r = arg;
	struct kl_backend *b = r->b;

	if (r->finishing || r->atts == NULL)
		return;
	b->st.attempt_timeouts++;
	mark_unhealthy(b, r->atts->server, "no answer within attempt_timeout_ms");
	/* Nothing left to try: the tries in flight may still answer before the deadline. */
	(void)dispatch(b, r);
}

static void on_timer(struct kw_loop *loop, void *arg)
{
	struct req *r = arg;
	struct kl_backend *b = r->b;

	if (r->finishing) {
		complete(r, r->final);
		return;
	}
	/* The deadline. Tries still in flight are given up: their answers will be dropped. */
	b->st.timeouts++;
	give_up(r, is_link_failure(r->last_error) ? r->last_error : -KW_ETIMEOUT);
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
	kw_list_init(&r->link);
	kw_list_init(&r->bl_link);
	r->op = op;
	r->b = b;
	r->pinned = pinned;
	r->deadline_ns = op->deadline_ns != 0 ? op->deadline_ns : now + b->timeout_ns;
	kw_timer_init(&r->timer, on_timer, r);
	kw_timer_init(&r->att_timer, on_attempt_timer, r);
	if (kw_timer_start_at(b->loop, &r->timer, r->deadline_ns) < 0) {
		free(r);
		return -ENOMEM;
	}
	kw_op_accept(op);
	op->submit_ns = now;
	op->attempts = 0;
	op->server = -1;
	op->remote_error = 0;
	kw_list_add(&b->reqs, &r->link);
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

void kw_backend_keyless_forget_fds(struct kw_backend *base)
{
	struct kl_backend *b = kl(base);

	for (size_t i = 0; b->servers != NULL && i < b->nservers; i++)
		for (unsigned k = 0; b->servers[i].conns != NULL && k < b->connections; k++)
			kw_client_forget_fd(b->servers[i].conns[k]);
}

static void keyless_free(struct kw_backend *base)
{
	struct kl_backend *b = kl(base);

	b->freeing = true;
	/* Freeing a client fails its requests with -KW_ECANCELED: their ops complete here. */
	for (size_t i = 0; b->servers != NULL && i < b->nservers; i++)
		for (unsigned k = 0; b->servers[i].conns != NULL && k < b->connections; k++)
			kw_client_free(b->servers[i].conns[k]);
	while (!kw_list_empty(&b->reqs))
		complete(kw_list_entry(kw_list_first(&b->reqs), struct req, link), -KW_ECANCELED);
	kw_timer_stop(b->loop, &b->idle_timer);
	for (size_t i = 0; b->servers != NULL && i < b->nservers; i++) {
		kw_timer_stop(b->loop, &b->servers[i].probe_timer);
		free(b->servers[i].conns);
		free(b->servers[i].used_ns);
		free(b->servers[i].name);
	}
	free(b->servers);
	SSL_CTX_free(b->ssl_ctx);
	kw_keyset_free(b->fallback);
	free(b);
}

KW_BACKEND_OPS(keyless, "keyless");

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
	kw_list_init(&b->reqs);
	kw_list_init(&b->backlog);
	b->loop = loop;
	b->connections = cfg->connections ? cfg->connections : 2;
	b->conn_max = cfg->conn_max_inflight ? cfg->conn_max_inflight : 1000;
	b->max_inflight = cfg->max_inflight ? cfg->max_inflight : 1024;
	unsigned timeout_ms = cfg->timeout_ms ? cfg->timeout_ms : 2000;
	b->timeout_ns = (uint64_t)timeout_ms * MS;
	b->attempt_ns = (uint64_t)(cfg->attempt_timeout_ms ? cfg->attempt_timeout_ms : 300) * MS;
	b->idle_ns = (uint64_t)(cfg->idle_ping_ms ? cfg->idle_ping_ms : 10000) * MS;
	b->counters = cfg->counters;
	b->fallback = kw_keyset_ref(cfg->fallback);
	atomic_init(&b->in_fallback, false);
	kw_timer_init(&b->idle_timer, on_idle_timer, b);
	if (cfg->ssl_ctx != NULL) {
		SSL_CTX_up_ref(cfg->ssl_ctx);
		b->ssl_ctx = cfg->ssl_ctx;
	}
	b->nservers = cfg->nservers;
	if ((b->servers = calloc(b->nservers, sizeof(*b->servers))) == NULL)
		goto err;
	/* Every timer is stoppable before anything else can fail. */
	for (size_t i = 0; i < b->nservers; i++) {
		b->servers[i].b = b;
		b->servers[i].idx = (unsigned)i;
		kw_timer_init(&b->servers[i].probe_timer, on_probe_timer, &b->servers[i]);
	}
	for (size_t i = 0; i < b->nservers; i++) {
		struct server *s = &b->servers[i];
		char text[300];
		if (cfg->names != NULL && cfg->names[i] != NULL)
			snprintf(text, sizeof(text), "%s", cfg->names[i]);
		else
			kw_addr_format(&cfg->addrs[i], text, sizeof(text));
		if ((s->name = strdup(text)) == NULL ||
		    (s->conns = calloc(b->connections, sizeof(*s->conns))) == NULL ||
		    (s->used_ns = calloc(b->connections, sizeof(*s->used_ns))) == NULL)
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
