/*
 * async.c - one private-key operation, paused and resumed inside an
 * ASYNC_JOB or waited for outside one (see async.h).
 *
 * Everything a paused job needs lives in the heap op, never on the fibre's
 * 32 KiB stack, and everything a completion touches is the op: whether the
 * job resumed early, ran on, or went away with its SSL.
 *
 * Exactness of the counters. A completion sets `notified` and then notifies
 * (callback or eventfd), exactly once per op that was not done inside submit;
 * the job stops pausing only once it sees `notified`. So each op ends exactly
 * one of its OK pauses on its notification and every other OK pause was a
 * spurious resume: notifications = pauses - spurious_resumes - eagain.
 *
 * The eventfd of a wait context is written only by the completion of the op
 * its job waits for (while attached) and by a capacity wake-up (under the
 * capacity queue's lock, while the job is queued). The job drains it before
 * submitting, after every resume, and once more after kw_op_detach (which
 * waits out a completion still writing), so a job leaves it empty and no
 * stale count resumes the next operation.
 */
#include "async.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/crypto.h>

#include "keyway/backend.h"
#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/provider_api.h"
#include "cap.h"
#include "io.h"
#include "context.h"
#include "keyref.h"
#include "stats.h"

/* How long a blocked caller waits past the deadline for the backend's own verdict. */
#define GRACE_NS (200ull * 1000 * 1000)

struct wstate;
struct ext_cap;

struct kwp_op {
	struct kw_op op;     /* first: a kw_op pointer is a kwp_op pointer */
	uint8_t *in;         /* owned copy of the input, wiped on release */
	EVP_PKEY *local;     /* a reference on the key's local EVP_PKEY (op.pkey), or NULL */
	struct kwp_waiter w; /* how the caller waits: for its completion and in cap */
	atomic_bool notified;
	bool in_submit;   /* inside a bound backend's submit, on this thread */
	bool inline_done; /* completed inside submit: nothing notified, no pause */
	bool holds_slot;  /* counted in cap until settled */
	atomic_bool settled;
	struct kwp_cap *cap; /* the capacity queue of its channel */
	struct ext_cap *ext; /* a reference on cap's owner when cap is a thread's (CH_EXT) */
	bool gave_up;        /* a blocked caller stopped waiting: read nothing of the op */
	bool sync_init;
	pthread_mutex_t mu; /* sync mode */
	pthread_cond_t cv;
};

/*
 * The capacity queue of a thread's bound backend (external polling). It is
 * per thread, but an op that points to it may be settled after that thread
 * exited or from another one (a job resumed elsewhere, a detached op): so
 * it lives on the heap, referenced by its thread (dropped at thread exit)
 * and by every op that points to it.
 */
struct ext_cap {
	struct kwp_cap cap;
	atomic_uint refs;
};

static _Thread_local struct ext_cap *thread_ext;
static pthread_key_t ext_key; /* its destructor drops the thread's reference */
static pthread_once_t ext_once = PTHREAD_ONCE_INIT;
static bool ext_key_ok;

static void ext_cap_unref(struct ext_cap *e)
{
	if (e == NULL || atomic_fetch_sub(&e->refs, 1) != 1)
		return;
	kwp_cap_cleanup(&e->cap);
	free(e);
}

static void ext_cap_thread_exit(void *e)
{
	ext_cap_unref(e);
}

static void ext_key_init(void)
{
	ext_key_ok = pthread_key_create(&ext_key, ext_cap_thread_exit) == 0;
}

/* ext_cap_of_thread is the calling thread's queue (made on first use), or NULL. */
static struct ext_cap *ext_cap_of_thread(void)
{
	struct ext_cap *e;

	if (thread_ext != NULL)
		return thread_ext;
	pthread_once(&ext_once, ext_key_init);
	if (!ext_key_ok || (e = calloc(1, sizeof(*e))) == NULL)
		return NULL;
	kwp_cap_init(&e->cap, 0);
	atomic_init(&e->refs, 1);
	if (pthread_setspecific(ext_key, e) != 0) {
		kwp_cap_cleanup(&e->cap);
		free(e);
		return NULL;
	}
	return thread_ext = e;
}

/* drain_efd empties an eventfd; true if it was signalled. */
static bool drain_efd(int fd)
{
	uint64_t v;
	ssize_t r;
	do
		r = read(fd, &v, sizeof(v));
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)sizeof(v);
}

/* settle gives p's slot back once, whether p completed attached or detached. */
static void settle(struct kwp_op *p)
{
	if (!p->holds_slot || atomic_exchange(&p->settled, true))
		return;
	kwp_cap_wake(p->cap, true);
}

/* ---- ops ---- */

static void op_done(struct kw_op *op, void *arg)
{
	struct kwp_op *p = arg;

	if (p->in_submit) {
		/* Computed inside submit on this thread: the caller sees it, no pause. */
		p->inline_done = true;
		settle(p);
		return;
	}
	settle(p);
	/* Before the notification: a resume that sees it knows the notification came or comes. */
	atomic_store(&p->notified, true);
	switch (p->w.mode) {
	case KWP_WAKE_CALLBACK:
		KWP_COUNT(callback_wakeups);
		kwp_waiter_wake(&p->w);
		break;
	case KWP_WAKE_FD:
		KWP_COUNT(fd_wakeups);
		kwp_waiter_wake(&p->w);
		break;
	case KWP_WAKE_COND:
		pthread_mutex_lock(&p->mu);
		kwp_waiter_wake(&p->w);
		pthread_mutex_unlock(&p->mu);
		break;
	}
}

static void op_release(struct kw_op *op)
{
	struct kwp_op *p = (struct kwp_op *)op;

	settle(p); /* completed after its owner detached: the slot is still counted */
	ext_cap_unref(p->ext);
	if (p->in != NULL) {
		OPENSSL_cleanse(p->in, p->op.in_len);
		free(p->in);
	}
	EVP_PKEY_free(p->local);
	if (p->sync_init) {
		pthread_mutex_destroy(&p->mu);
		pthread_cond_destroy(&p->cv);
	}
	free(p);
}

static struct kwp_op *op_new(const struct kwp_key *key, uint8_t opcode, const uint8_t *in,
                             size_t in_len, unsigned timeout_ms)
{
	struct kwp_op *p = calloc(1, sizeof(*p));

	if (p == NULL)
		return NULL;
	kw_op_init(&p->op, KW_OPK_ASYM, opcode);
	/* The input lives with the op: a crypto thread may read it after its caller left. */
	if ((p->in = malloc(in_len ? in_len : 1)) == NULL) {
		free(p);
		return NULL;
	}
	if (in_len > 0)
		memcpy(p->in, in, in_len);
	p->op.in = p->in;
	p->op.in_len = in_len;
	memcpy(p->op.ski, key->ski, KW_SKI_LEN);
	/*
	 * The op may outlive its caller's key (a detached op, a crypto thread
	 * computing after SSL_free): it holds its own reference.
	 */
	if (key->local != NULL) {
		if (EVP_PKEY_up_ref(key->local) != 1) {
			free(p->in);
			free(p);
			return NULL;
		}
		p->local = key->local;
	}
	p->op.pkey = p->local;
	p->op.deadline_ns = kwp_io_deadline_ms(timeout_ms);
	p->op.done = op_done;
	p->op.done_arg = p;
	p->op.release = op_release;
	p->w.efd = -1;
	p->w.cv = &p->cv;
	atomic_init(&p->notified, false);
	atomic_init(&p->settled, false);
	return p;
}

void kwp_op_unref(struct kwp_op *p)
{
	if (p != NULL)
		kw_op_unref(&p->op);
}

const uint8_t *kwp_op_out(const struct kwp_op *p, size_t *len)
{
	*len = p->op.out_len;
	return p->op.out;
}

static int sync_init(struct kwp_op *p)
{
	pthread_condattr_t ca;

	if (pthread_mutex_init(&p->mu, NULL) != 0)
		return -ENOMEM;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int rc = pthread_cond_init(&p->cv, &ca);
	pthread_condattr_destroy(&ca);
	if (rc != 0) {
		pthread_mutex_destroy(&p->mu);
		return -ENOMEM;
	}
	p->sync_init = true;
	return 0;
}

static struct timespec abs_ts(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000u),
	                      .tv_nsec = (long)(ns % 1000000000u)};
	return ts;
}

/* ---- channels: where an op runs ---- */

enum chan_kind { CH_IO, CH_EXT, CH_INLINE };

struct chan {
	enum chan_kind kind;
	struct kwp_io *io;    /* CH_IO */
	struct kw_backend *b; /* CH_EXT: the thread's bound backend */
	struct ext_cap *ext;  /* CH_EXT: that thread's capacity queue */
	struct kwp_cap *cap;
};

/*
 * chan_submit starts p: 0, or -EAGAIN when the channel is full (p then
 * waits in the capacity queue if queue is set: taking the slot and joining
 * the queue happen under one lock, so no completion can slip between), or
 * another negative code.
 */
static int chan_submit(struct chan *ch, struct kwp_op *p, bool queue)
{
	int rc;

	p->cap = ch->cap;
	if (ch->ext != NULL && p->ext == NULL) {
		atomic_fetch_add(&ch->ext->refs,
		                 1); /* p may point to cap after this thread exits */
		p->ext = ch->ext;
	}
	if (ch->kind == CH_IO) {
		if ((rc = kwp_cap_take(ch->cap, &p->w, queue)) < 0)
			return rc;
		p->holds_slot = true;
		if ((rc = kwp_io_submit(ch->io, &p->op)) < 0) {
			settle(p);
			return rc;
		}
	} else {
		/* Our own thread runs the backend's completions: none can come between. */
		p->holds_slot = true;
		p->in_submit = true;
		rc = kw_backend_submit(ch->b, &p->op);
		p->in_submit = false;
		if (rc < 0) {
			p->holds_slot = false;
			if (rc == -EAGAIN && queue)
				kwp_cap_enqueue(ch->cap, &p->w);
			return rc;
		}
	}
	KWP_COUNT(ops_submitted);
	return 0;
}

/* wait_backend lets a bound backend make progress while its owner blocks (no job). */
static void wait_backend(struct kw_backend *b)
{
	if (kw_backend_poll(b, 64) > 0)
		return;
	int fd = kw_backend_wake_fd(b);
	if (fd < 0) {
		sched_yield();
		return;
	}
	if (kw_backend_arm(b)) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		(void)poll(&pf, 1, 10);
		kw_backend_disarm(b);
		kw_backend_drain_wake_fd(b);
	}
}

/* ---- per wait context: an eventfd (fd mode) and the teardown hook (both modes) ---- */

/*
 * Our entry in a wait context. Its cleanup is the only hook OpenSSL 3.0
 * runs when a wait context is freed (SSL_free, perhaps with the job paused
 * for good), and the wait context keeps cleanups only for fd entries. So
 * callback mode registers one too, with OSSL_BAD_ASYNC_FD: no descriptor is
 * created, and without it a waiter of a freed SSL would stay in a capacity
 * queue (or its op attached) and a later wake-up would call the callback of
 * an SSL that is gone.
 */
struct wstate {
	int efd;          /* fd mode: the eventfd; callback mode: -1 */
	struct kwp_op *p; /* the op its job is paused on (the job's reference), or NULL */
	bool clean;       /* efd is known to be unsignalled: no read needed before a submit */
};

static const char wait_key; /* our entry in every ASYNC_WAIT_CTX */

/* ws_drain empties ws's eventfd; true if it was signalled (never in callback mode). */
static bool ws_drain(const struct wstate *ws)
{
	return ws->efd >= 0 && drain_efd(ws->efd);
}

/*
 * The wait context is being freed (SSL_free), perhaps with its job paused
 * for good. Out of the capacity queue and detached first (each waits out a
 * callback or write still running), so no wake-up can follow; close last.
 */
static void wstate_cleanup(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
	struct wstate *ws = custom;
	struct kwp_op *p = ws->p;

	if (p != NULL) {
		kwp_cap_leave(p->cap, &p->w);
		kw_op_detach(&p->op);
		kwp_op_unref(p); /* the job will never resume to drop it */
	}
	if (ws->efd >= 0)
		close(ws->efd);
	free(ws);
}

/* wstate_get finds or makes w's entry; with_fd (fd mode) gives it an eventfd. */
static int wstate_get(ASYNC_WAIT_CTX *w, bool with_fd, struct wstate **out)
{
	OSSL_ASYNC_FD fd = -1;
	void *custom = NULL;
	struct wstate *ws;

	if (ASYNC_WAIT_CTX_get_fd(w, &wait_key, &fd, &custom) == 1 && custom != NULL) {
		*out = custom;
		return 0;
	}
	if ((ws = calloc(1, sizeof(*ws))) == NULL)
		return -ENOMEM;
	ws->efd = -1;
	if (with_fd && (ws->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
		int rc = -errno;
		free(ws);
		return rc;
	}
	if (ASYNC_WAIT_CTX_set_wait_fd(w, &wait_key, with_fd ? ws->efd : OSSL_BAD_ASYNC_FD, ws,
	                               wstate_cleanup) != 1) {
		if (ws->efd >= 0)
			close(ws->efd);
		free(ws);
		return -ENOMEM;
	}
	ws->clean = true;
	if (with_fd)
		KWP_COUNT(eventfds_created);
	*out = ws;
	return 0;
}

/* ---- the four stages ---- */

static int run_async(struct kwp_op *p, struct chan *ch, ASYNC_JOB *job)
{
	ASYNC_WAIT_CTX *w = ASYNC_get_wait_ctx(job);
	struct wstate *ws = NULL;
	int rc;

	if (w == NULL)
		return -EINVAL;
	if (ASYNC_WAIT_CTX_get_callback(w, &p->w.cb, &p->w.cb_arg) == 1)
		p->w.mode = KWP_WAKE_CALLBACK;
	else
		p->w.mode = KWP_WAKE_FD;
	if ((rc = wstate_get(w, p->w.mode == KWP_WAKE_FD, &ws)) < 0)
		return rc;
	p->w.efd = ws->efd;
	if (!ws->clean)
		(void)ws_drain(ws);
	ws->clean = false; /* until this op has left it empty */

	/* Pre-processing; a full channel: wait for the completion that frees a slot. */
	while ((rc = chan_submit(ch, p, true)) == -EAGAIN) {
		ws->p = p;
		KWP_COUNT(eagain);
		KWP_COUNT(pauses);
		ASYNC_WAIT_CTX_set_status(w, ASYNC_STATUS_EAGAIN);
		ASYNC_pause_job();
		(void)kwp_cap_unqueue(
		    p->cap, &p->w); /* still queued: resumed by something else; try again */
		ws->p = NULL;
		(void)ws_drain(ws);
	}
	if (rc < 0)
		return rc;
	if (p->inline_done)
		return 0;

	/* Paused until notified; a resume before that pauses again. */
	bool consumed = false; /* the last resume read the completion's one write */
	ws->p = p;
	for (;;) {
		KWP_COUNT(pauses);
		ASYNC_WAIT_CTX_set_status(w, ASYNC_STATUS_OK);
		ASYNC_pause_job();
		consumed = ws_drain(ws);
		if (atomic_load(&p->notified))
			break;
		KWP_COUNT(spurious_resumes);
	}
	/*
	 * Post-processing: the completion may still be finishing its
	 * notification. It writes once: if that write was read above, none can
	 * follow; otherwise read it after the detach has waited it out.
	 */
	kw_op_detach(&p->op);
	ws->p = NULL;
	if (!consumed)
		(void)ws_drain(ws);
	ws->clean = true;
	return 0;
}

static int run_sync(struct kwp_op *p, struct chan *ch)
{
	int rc;

	p->w.mode = KWP_WAKE_COND;
	if ((rc = sync_init(p)) < 0)
		return rc;
	if (ch->kind == CH_EXT) {
		/* We own the backend: drive it ourselves while we wait. */
		while ((rc = chan_submit(ch, p, false)) == -EAGAIN)
			wait_backend(ch->b);
		if (rc < 0)
			return rc;
		while (!p->inline_done && !atomic_load(&p->notified))
			wait_backend(ch->b);
		kw_op_detach(&p->op);
		return 0;
	}
	struct timespec deadline = abs_ts(p->op.deadline_ns);
	while ((rc = chan_submit(ch, p, true)) == -EAGAIN)
		if ((rc = kwp_cap_wait(p->cap, &p->w, &deadline)) < 0)
			return rc;
	if (rc < 0)
		return rc;
	struct timespec ts = abs_ts(p->op.deadline_ns + GRACE_NS);
	pthread_mutex_lock(&p->mu);
	while (!atomic_load(&p->notified))
		if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&p->mu);
	/* Gave up: the op completes by itself later; nothing of it is read. */
	kw_op_detach(&p->op);
	if (atomic_load(&p->notified))
		return 0;
	p->gave_up = true;
	return -KW_ETIMEOUT;
}

/* ---- the entry point ---- */

static int route(struct kwp_prov *prov, const struct kwp_key *key, bool in_job, struct chan *ch)
{
	struct kw_backend *b = kw_backend_thread();

	memset(ch, 0, sizeof(*ch));
	if (key->local != NULL) {
		/* A wrapped local key: the thread's local backend, else right here. */
		if (b != NULL && !kw_backend_is_keyless(b)) {
			ch->kind = CH_EXT;
			ch->b = b;
			if ((ch->ext = ext_cap_of_thread()) == NULL)
				return -ENOMEM;
			ch->cap = &ch->ext->cap;
		} else {
			ch->kind = CH_INLINE;
		}
		return 0;
	}
	/* Blocking callers (no job) use the I/O thread: nobody would drive the loop meanwhile. */
	if (prov->settings.polling == KWP_POLLING_EXTERNAL && in_job && kw_backend_is_keyless(b)) {
		ch->kind = CH_EXT;
		ch->b = b;
		if ((ch->ext = ext_cap_of_thread()) == NULL)
			return -ENOMEM;
		ch->cap = &ch->ext->cap;
		return 0;
	}
	ch->kind = CH_IO;
	ch->cap = &prov->cap;
	if ((ch->io = kwp_prov_io(prov)) == NULL)
		return -ENOMEM;
	return 0;
}

static const char *server_text(struct kwp_prov *prov, const struct chan *ch, int i)
{
	if (i < 0)
		return "keyserver";
	if (ch->kind == CH_EXT)
		return kw_backend_keyless_server_name(ch->b, (size_t)i);
	return (size_t)i < prov->settings.nservers ? prov->settings.server_texts[i] : "keyserver";
}

static void report(struct kwp_prov *prov, const struct chan *ch, const struct kwp_op *p,
                   const struct kwp_key *key, int rc)
{
	const struct kwp_settings *s = &prov->settings;
	/* The backend may still write an op its caller gave up on: touch none of it. */
	const char *where = p->gave_up ? "keyserver" : server_text(prov, ch, p->op.server);
	int server = p->gave_up ? -1 : p->op.server;
	uint8_t opcode = p->op.opcode;
	char hex[2 * KW_SKI_LEN + 1];

	/* Errors name the operation, not this helper. */
#define RAISE(...) kwp_raise_at(prov, __FILE__, __LINE__, "kwp_key_op", __VA_ARGS__)
	kw_hex(hex, key->ski, KW_SKI_LEN);
	if (key->local != NULL) {
		RAISE(KWP_R_LOCAL, "%s with the local key failed: %s",
		      kw_opcode_name(opcode) ? kw_opcode_name(opcode) : "operation",
		      kw_strerror(rc));
		return;
	}
	switch (rc) {
	case -KW_EREMOTE:
		if (p->op.remote_error == KW_ERR_KEY_NOT_FOUND)
			RAISE(KWP_R_KEY_NOT_FOUND,
			      KW_PROVIDER_KEY_NOT_FOUND_TEXT "%s (last asked: %s)", hex, where);
		else
			RAISE(KWP_R_REMOTE_ERROR, "%s answered \"%s\" (%s, key SKI %s)", where,
			      kw_proto_error_string(p->op.remote_error),
			      kw_opcode_name(opcode) ? kw_opcode_name(opcode) : "?", hex);
		break;
	case -KW_ETIMEOUT:
		RAISE(KWP_R_TIMEOUT, "no answer within timeout_ms=%u%s%s", s->timeout_ms,
		      server >= 0 ? " from " : "", server >= 0 ? where : "");
		break;
	case -KW_ECONFIG: {
		const char *why = ch->io != NULL ? kwp_io_setup_error(ch->io) : NULL;
		RAISE(KWP_R_CONFIG, "%s", why ? why : "cannot set up keyserver connections");
		break;
	}
	case -KW_ETLS:
		kwp_raise(
		    prov, KWP_R_TLS,
		    "%s: TLS failure (is its certificate signed by the configured ca, for the "
		    "name in servers or server_name?)",
		    where);
		break;
	case -KW_ECANCELED:
		RAISE(KWP_R_INTERNAL, "operation canceled: the provider is shutting down");
		break;
	case -ENOMEM:
		RAISE(KWP_R_INTERNAL, "out of memory");
		break;
	default:
		RAISE(KWP_R_UNREACHABLE, "%s: %s", where, kw_strerror(rc));
		break;
	}
#undef RAISE
}

int kwp_key_op(struct kwp_prov *prov, const struct kwp_key *key, uint8_t opcode, const uint8_t *in,
               size_t in_len, struct kwp_op **res)
{
	return kwp_key_op_ex(prov, key, opcode, in, in_len, res, NULL);
}

int kwp_key_op_ex(struct kwp_prov *prov, const struct kwp_key *key, uint8_t opcode,
                  const uint8_t *in, size_t in_len, struct kwp_op **res, uint8_t *remote_error)
{
	if (remote_error != NULL)
		*remote_error = KW_ERR_NONE;
	const struct kwp_settings *s = &prov->settings;
	ASYNC_JOB *job = ASYNC_get_current_job();
	struct chan ch;
	struct kwp_op *p;
	int rc;

	*res = NULL;
	if (key->local == NULL) {
		if ((rc = kwp_check_config(prov)) < 0)
			return rc;
		if (s->nservers == 0) {
			kwp_raise(prov, KWP_R_NOT_CONFIGURED,
			          "set servers in the provider's openssl.cnf section or "
			          "KEYWAY_SERVERS");
			return -KW_ECONFIG;
		}
	}
	if ((p = op_new(key, opcode, in, in_len, s->timeout_ms)) == NULL) {
		kwp_raise(prov, KWP_R_INTERNAL, "out of memory");
		return -ENOMEM;
	}
	if ((rc = route(prov, key, job != NULL, &ch)) < 0) {
		kwp_op_unref(p);
		return rc; /* raised by kwp_prov_io */
	}
	if (ch.kind == CH_INLINE) {
		KWP_COUNT(ops_submitted);
		rc = kw_op_compute(&p->op);
	} else {
		rc = job != NULL ? run_async(p, &ch, job) : run_sync(p, &ch);
		if (rc == 0)
			rc = p->op.status;
	}
	if (rc == 0) {
		*res = p;
		return 0;
	}
	if (remote_error != NULL && rc == -KW_EREMOTE && !p->gave_up)
		*remote_error = p->op.remote_error;
	report(prov, &ch, p, key, rc);
	kwp_op_unref(p);
	return rc;
}
