/*
 * pool.c - crypto cores: threads with their own engine, fed jobs through a
 * bounded SPSC ring each and handing them back through another; core
 * selection by sched.c; a re-sequencer that delivers each connection's
 * jobs in submission order; eventfd wake-ups both ways instead of spinning.
 *
 * Sleeping and waking follow one pattern on both sides: the sleeper
 * publishes its flag, then looks at its ring once more, then blocks on its
 * eventfd; the other side publishes work, then reads the flag, and writes
 * the eventfd only if it is set. Sequentially consistent operations on the
 * flag and the ring index make one of the two see the other.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "keyway/err.h"
#include "keyway/quic.h"
#include "keyway/ring.h"

#define DOMAINS 1024 /* ordering domains: connections hash into them */

struct job {
	struct kw_quic_pkt *pkts;
	size_t n;
	uint32_t domain;
	uint64_t seq;     /* submission order within its domain */
	struct job *next; /* free list, inline list, re-sequencer */
};

struct core {
	struct kw_quic_pool *pool;
	pthread_t thread;
	bool started;
	struct kw_quic_engine *engine;
	struct kw_ring in, out;
	int efd;                   /* wakes the core */
	_Atomic int sleeping;      /* the core is (about to be) blocked on efd */
	_Atomic uint64_t finished; /* jobs run (the core writes) */
	uint64_t sent, polled;     /* jobs pushed and taken back (the owner writes) */
	int cpu;                   /* -1: not pinned */
};

struct domain {
	uint64_t next_seq, next_deliver;
	struct job *pending; /* finished early, sorted by seq */
};

struct kw_quic_pool {
	struct kw_quic_pool_config cfg;
	struct kw_quic_engine *engine; /* inline */
	struct core *cores;
	unsigned ncores;
	struct job *jobs, *free_jobs;
	struct job *inline_head, **inline_tail;
	size_t inflight; /* packets */
	int efd;         /* wakes the owner */
	_Atomic int want_wake, fired;
	_Atomic bool stop, paused;
	struct kw_quic_pool_stats stats;
	_Atomic uint64_t host_wakeups;
	struct domain domains[DOMAINS];
};

static uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static void notify(int efd)
{
	uint64_t one = 1;
	ssize_t rc = write(efd, &one, sizeof(one));
	(void)rc; /* a full counter already wakes the reader */
}

static void drain_fd(int efd)
{
	uint64_t v;
	ssize_t rc = read(efd, &v, sizeof(v));
	(void)rc;
}

/* ---- the cores ---- */

static bool core_has_work(struct core *c)
{
	struct kw_quic_pool *p = c->pool;
	return atomic_load(&p->stop) || (!atomic_load(&p->paused) && !kw_ring_empty(&c->in));
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* idle polls for spin_ns, then sleeps until a submit (or stop) wakes the core. */
static void core_idle(struct core *c)
{
	struct kw_quic_pool *p = c->pool;

	if (p->cfg.spin_ns > 0) {
		uint64_t until = now_ns() + p->cfg.spin_ns;
		while (now_ns() < until)
			if (core_has_work(c))
				return;
	}
	atomic_store(&c->sleeping, 1);
	if (!core_has_work(c))
		drain_fd(c->efd);
	atomic_store(&c->sleeping, 0);
}

static void *core_main(void *arg)
{
	struct core *c = arg;
	struct kw_quic_pool *p = c->pool;

	if (c->cpu >= 0) {
		cpu_set_t set;
		CPU_ZERO(&set);
		CPU_SET(c->cpu, &set);
		pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	}
	while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
		struct job *j = NULL;
		if (!atomic_load_explicit(&p->paused, memory_order_relaxed))
			j = kw_ring_pop(&c->in);
		if (j == NULL) {
			core_idle(c);
			continue;
		}
		kw_quic_engine_run(c->engine, j->pkts, j->n);
		/* The owner keeps sent - polled within the ring: out always has room. */
		kw_ring_push(&c->out, j);
		atomic_fetch_add_explicit(&c->finished, 1, memory_order_release);
		if (atomic_load(&p->want_wake) && atomic_exchange(&p->want_wake, 0)) {
			atomic_store(&p->fired, 1);
			atomic_fetch_add_explicit(&p->host_wakeups, 1, memory_order_relaxed);
			notify(p->efd);
		}
	}
	return NULL;
}

/* ---- completion and re-sequencing (the owner's thread) ---- */

static void key_refs(struct kw_quic_pkt *pkts, size_t n, bool take)
{
	/* One reference per run of packets under the same key, not one per packet. */
	for (size_t i = 0; i < n; i++) {
		if (i == 0 || pkts[i].key != pkts[i - 1].key)
			take ? (void)kw_quic_key_ref(pkts[i].key) : kw_quic_key_unref(pkts[i].key);
		if (i == 0 || pkts[i].key1 != pkts[i - 1].key1)
			take ? (void)kw_quic_key_ref(pkts[i].key1)
			     : kw_quic_key_unref(pkts[i].key1);
	}
}

static void deliver(struct kw_quic_pool *p, struct job *j)
{
	struct domain *d = &p->domains[j->domain];

	d->next_deliver++;
	p->inflight -= j->n;
	p->stats.completed += j->n;
	key_refs(j->pkts, j->n, false);
	struct kw_quic_pkt *pkts = j->pkts;
	size_t n = j->n;
	j->next = p->free_jobs;
	p->free_jobs = j;
	p->cfg.done(p->cfg.done_arg, pkts, n);
}

/* finish passes a run job to the re-sequencer: delivered now, or held until its turn. */
static void finish(struct kw_quic_pool *p, struct job *j)
{
	struct domain *d = &p->domains[j->domain];

	if (j->seq != d->next_deliver) {
		struct job **at = &d->pending;
		p->stats.out_of_order++;
		while (*at != NULL && (*at)->seq < j->seq)
			at = &(*at)->next;
		j->next = *at;
		*at = j;
		return;
	}
	deliver(p, j);
	while (d->pending != NULL && d->pending->seq == d->next_deliver) {
		struct job *next = d->pending;
		d->pending = next->next;
		deliver(p, next);
	}
}

static size_t drain(struct kw_quic_pool *p)
{
	uint64_t before = p->stats.completed;

	while (p->inline_head != NULL) {
		struct job *j = p->inline_head;
		p->inline_head = j->next;
		if (p->inline_head == NULL)
			p->inline_tail = &p->inline_head;
		finish(p, j);
	}
	for (unsigned i = 0; i < p->ncores; i++) {
		struct core *c = &p->cores[i];
		for (struct job *j; (j = kw_ring_pop(&c->out)) != NULL;) {
			c->polled++;
			finish(p, j);
		}
	}
	return (size_t)(p->stats.completed - before);
}

static void arm(struct kw_quic_pool *p)
{
	atomic_store(&p->want_wake, 1);
}

int kw_quic_pool_poll(struct kw_quic_pool *p)
{
	if (atomic_exchange(&p->fired, 0))
		drain_fd(p->efd);
	return (int)drain(p);
}

int kw_quic_pool_arm(struct kw_quic_pool *p)
{
	/* Arm first, then look again: a completion in between is seen either way. */
	arm(p);
	return (int)drain(p);
}

/* ---- submission ---- */

/* pick_core applies the policy to the cores' current queues. */
static int pick_core(struct kw_quic_pool *p, uint64_t h)
{
	unsigned queue[64];
	bool room[64];

	for (unsigned i = 0; i < p->ncores; i++) {
		struct core *c = &p->cores[i];
		queue[i] =
		    (unsigned)(c->sent - atomic_load_explicit(&c->finished, memory_order_acquire));
		room[i] = c->sent - c->polled <= c->in.mask;
	}
	return kw_quic_sched_pick(p->cfg.sched, p->cfg.bound, h, queue, room, p->ncores);
}

static int submit_job(struct kw_quic_pool *p, struct kw_quic_pkt *pkts, size_t n)
{
	uint64_t h = mix(pkts[0].conn);
	struct core *c = NULL;

	if (p->free_jobs == NULL)
		return -EAGAIN;
	if (p->cfg.sched != KW_QUIC_SCHED_INLINE) {
		int i = pick_core(p, h >> 16);
		if (i < 0)
			return -EAGAIN;
		c = &p->cores[i];
	}
	struct job *j = p->free_jobs;
	p->free_jobs = j->next;
	j->pkts = pkts;
	j->n = n;
	j->domain = (uint32_t)(h & (DOMAINS - 1));
	j->seq = p->domains[j->domain].next_seq++;
	j->next = NULL;
	key_refs(pkts, n, true);
	p->inflight += n;
	p->stats.jobs++;
	p->stats.submitted += n;
	if (c == NULL) {
		kw_quic_engine_run(p->engine, pkts, n);
		*p->inline_tail = j;
		p->inline_tail = &j->next;
		return 0;
	}
	kw_ring_push(&c->in, j);
	c->sent++;
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load(&c->sleeping) && atomic_exchange(&c->sleeping, 0)) {
		p->stats.core_wakeups++;
		notify(c->efd);
	}
	return 0;
}

int kw_quic_pool_submit(struct kw_quic_pool *p, struct kw_quic_pkt *pkts, size_t n)
{
	size_t done = 0;

	while (done < n) {
		size_t m = 1;
		while (done + m < n && m < p->cfg.max_batch &&
		       pkts[done + m].conn == pkts[done].conn)
			m++;
		if (submit_job(p, pkts + done, m) < 0)
			break;
		done += m;
	}
	if (done < n) {
		p->stats.full++;
		arm(p);
		if (done == 0)
			return -EAGAIN;
	}
	return (int)done;
}

int kw_quic_pool_fd(const struct kw_quic_pool *p)
{
	return p->efd;
}

int kw_quic_pool_wait(struct kw_quic_pool *p, int timeout_ms)
{
	struct pollfd pfd = {.fd = p->efd, .events = POLLIN};

	arm(p);
	if (p->inline_head != NULL)
		return 1;
	for (unsigned i = 0; i < p->ncores; i++)
		if (!kw_ring_empty(&p->cores[i].out))
			return 1;
	int rc = poll(&pfd, 1, timeout_ms);
	return rc < 0 ? -errno : rc;
}

size_t kw_quic_pool_inflight(const struct kw_quic_pool *p)
{
	return p->inflight;
}

void kw_quic_pool_stats(const struct kw_quic_pool *p, struct kw_quic_pool_stats *out)
{
	*out = p->stats;
	out->host_wakeups = atomic_load_explicit(&p->host_wakeups, memory_order_relaxed);
	out->core_cpu_ns = 0;
	for (unsigned i = 0; i < p->ncores; i++) {
		clockid_t clk;
		struct timespec ts;
		if (p->cores[i].started && pthread_getcpuclockid(p->cores[i].thread, &clk) == 0 &&
		    clock_gettime(clk, &ts) == 0)
			out->core_cpu_ns +=
			    (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
	}
}

void kw_quic_pool_pause(struct kw_quic_pool *p, bool paused)
{
	atomic_store(&p->paused, paused);
	for (unsigned i = 0; !paused && i < p->ncores; i++)
		notify(p->cores[i].efd);
}

/* ---- life cycle ---- */

static int core_start(struct kw_quic_pool *p, struct core *c, unsigned i)
{
	int rc;

	c->pool = p;
	c->cpu = p->cfg.cpus != NULL ? p->cfg.cpus[i] : -1;
	c->efd = eventfd(0, EFD_CLOEXEC);
	if (c->efd < 0)
		return -errno;
	if ((rc = kw_quic_engine_new(&c->engine, p->cfg.engine)) < 0)
		return rc;
	if (kw_ring_init(&c->in, p->cfg.ring) < 0 || kw_ring_init(&c->out, p->cfg.ring) < 0)
		return -ENOMEM;
	if ((rc = pthread_create(&c->thread, NULL, core_main, c)) != 0)
		return -rc;
	c->started = true;
	return 0;
}

static int config(struct kw_quic_pool_config *cfg)
{
	if (cfg->engine == NULL)
		cfg->engine = "auto";
	if (cfg->workers == 0)
		cfg->workers = 1;
	if (cfg->ring == 0)
		cfg->ring = 256;
	if (cfg->bound == 0)
		cfg->bound = 4;
	if (cfg->max_batch == 0)
		cfg->max_batch = 64;
	if (cfg->sched == KW_QUIC_SCHED_INLINE)
		cfg->workers = 0;
	if ((unsigned)cfg->sched >= KW_QUIC_SCHED_COUNT || cfg->done == NULL || cfg->workers > 64 ||
	    (cfg->ring & (cfg->ring - 1)) != 0 || cfg->ring > (1u << 20))
		return -EINVAL;
	return 0;
}

int kw_quic_pool_new(struct kw_quic_pool **out, const struct kw_quic_pool_config *cfg)
{
	struct kw_quic_pool *p;
	int rc;

	*out = NULL;
	if ((p = calloc(1, sizeof(*p))) == NULL)
		return -ENOMEM;
	p->cfg = *cfg;
	p->efd = -1;
	p->inline_tail = &p->inline_head;
	if ((rc = config(&p->cfg)) < 0)
		goto err;
	/* Every core's ring full, plus as many for inline jobs awaiting a poll. */
	size_t njobs = (size_t)(p->cfg.workers ? p->cfg.workers : 1) * p->cfg.ring;
	p->jobs = calloc(njobs, sizeof(*p->jobs));
	p->cores = calloc(p->cfg.workers ? p->cfg.workers : 1, sizeof(*p->cores));
	if (p->jobs == NULL || p->cores == NULL) {
		rc = -ENOMEM;
		goto err;
	}
	for (size_t i = njobs; i-- > 0;) {
		p->jobs[i].next = p->free_jobs;
		p->free_jobs = &p->jobs[i];
	}
	if ((p->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		rc = -errno;
		goto err;
	}
	if ((rc = kw_quic_engine_new(&p->engine, p->cfg.engine)) < 0)
		goto err;
	for (unsigned i = 0; i < p->cfg.workers; i++) {
		p->ncores++;
		if ((rc = core_start(p, &p->cores[i], i)) < 0)
			goto err;
	}
	*out = p;
	return 0;
err:
	kw_quic_pool_free(p);
	return rc;
}

/* cancel completes the jobs a stopped core never took. */
static void cancel_queued(struct kw_quic_pool *p, struct core *c)
{
	for (struct job *j; (j = kw_ring_pop(&c->in)) != NULL;) {
		for (size_t i = 0; i < j->n; i++)
			j->pkts[i].status = -KW_ECANCELED;
		p->stats.canceled += j->n;
		finish(p, j);
	}
}

void kw_quic_pool_free(struct kw_quic_pool *p)
{
	if (p == NULL)
		return;
	atomic_store(&p->stop, true);
	for (unsigned i = 0; i < p->ncores; i++)
		if (p->cores[i].started) {
			notify(p->cores[i].efd);
			pthread_join(p->cores[i].thread, NULL);
		}
	/* What ran completes with its status, what did not with -KW_ECANCELED; in order. */
	drain(p);
	for (unsigned i = 0; i < p->ncores; i++)
		cancel_queued(p, &p->cores[i]);
	for (unsigned i = 0; i < p->ncores; i++) {
		struct core *c = &p->cores[i];
		kw_quic_engine_free(c->engine);
		kw_ring_fini(&c->in);
		kw_ring_fini(&c->out);
		if (c->efd >= 0)
			close(c->efd);
	}
	kw_quic_engine_free(p->engine);
	if (p->efd >= 0)
		close(p->efd);
	free(p->cores);
	free(p->jobs);
	free(p);
}
