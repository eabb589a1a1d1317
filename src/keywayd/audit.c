/* audit.c - per-worker audit counts and the --audit-log writer (see audit.h). */
#include "audit.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "acl.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/log.h"

/* The writer runs this long after a boundary, so every worker's hand-in is there. */
#define WRITE_DELAY_NS 500000000ull

struct entry {
	char *client; /* NULL: free slot */
	uint64_t hash;
	uint8_t ski[KW_SKI_LEN];
	bool has_ski;
	uint8_t op;
	uint64_t requests, denied, failed;
};

/* An open-addressing table of entries; tables are merged by re-noting their entries. */
struct kwd_audit_tab {
	struct entry *e;
	size_t cap, n; /* cap is 0 or a power of two */
	uint64_t dropped;
};

struct handed {
	struct handed *next;
	struct kwd_audit_tab tab;
};

struct kwd_audit {
	char *path; /* NULL for standard output */
	int fd;
	pthread_mutex_t lock;
	struct handed *pending; /* under lock */
	struct kw_timer timer;
	struct kw_loop *loop;
};

/* ---- tables ---- */

static uint64_t hash_of(const char *client, const uint8_t *ski, unsigned op)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */
	for (const char *p = client; *p; p++)
		h = (h ^ (uint8_t)*p) * 1099511628211ull;
	for (size_t i = 0; ski != NULL && i < KW_SKI_LEN; i++)
		h = (h ^ ski[i]) * 1099511628211ull;
	return (h ^ op ^ (ski != NULL ? 0x100u : 0)) * 1099511628211ull;
}

static bool same(const struct entry *e, uint64_t h, const char *client, const uint8_t *ski,
                 unsigned op)
{
	return e->hash == h && e->op == op && e->has_ski == (ski != NULL) &&
	       (ski == NULL || memcmp(e->ski, ski, KW_SKI_LEN) == 0) &&
	       strcmp(e->client, client) == 0;
}

/* slot_for finds the entry of (client, ski, op) or the free slot for it. */
static struct entry *slot_for(struct kwd_audit_tab *t, uint64_t h, const char *client,
                              const uint8_t *ski, unsigned op)
{
	size_t mask = t->cap - 1;
	for (size_t i = (size_t)h & mask;; i = (i + 1) & mask)
		if (t->e[i].client == NULL || same(&t->e[i], h, client, ski, op))
			return &t->e[i];
}

static int grow(struct kwd_audit_tab *t)
{
	size_t ncap = t->cap ? t->cap * 2 : 64;
	struct entry *old = t->e, *ne = calloc(ncap, sizeof(*ne));
	if (ne == NULL)
		return -ENOMEM;
	size_t ocap = t->cap;
	t->e = ne;
	t->cap = ncap;
	for (size_t i = 0; i < ocap; i++) {
		if (old[i].client == NULL)
			continue;
		const uint8_t *ski = old[i].has_ski ? old[i].ski : NULL;
		*slot_for(t, old[i].hash, old[i].client, ski, old[i].op) = old[i];
	}
	free(old);
	return 0;
}

/* add counts (req, den, fail) for (client, ski, op); client is copied for a new entry. */
static void add(struct kwd_audit_tab *t, const char *client, const uint8_t *ski, unsigned op,
                uint64_t req, uint64_t den, uint64_t fail)
{
	if ((t->n + 1) * 10 > t->cap * 7 && grow(t) < 0) {
		t->dropped += req;
		return;
	}
	uint64_t h = hash_of(client, ski, op);
	struct entry *e = slot_for(t, h, client, ski, op);
	if (e->client == NULL) {
		if ((e->client = strdup(client)) == NULL) {
			t->dropped += req;
			return;
		}
		e->hash = h;
		e->op = (uint8_t)op;
		e->has_ski = ski != NULL;
		if (ski != NULL)
			memcpy(e->ski, ski, KW_SKI_LEN);
		t->n++;
	}
	e->requests += req;
	e->denied += den;
	e->failed += fail;
}

static void tab_clear(struct kwd_audit_tab *t)
{
	for (size_t i = 0; i < t->cap; i++)
		free(t->e[i].client);
	free(t->e);
	memset(t, 0, sizeof(*t));
}

int kwd_audit_tab_new(struct kwd_audit_tab **out)
{
	*out = calloc(1, sizeof(**out));
	return *out != NULL ? 0 : -ENOMEM;
}

void kwd_audit_tab_free(struct kwd_audit_tab *t)
{
	if (t == NULL)
		return;
	tab_clear(t);
	free(t);
}

void kwd_audit_note(struct kwd_audit_tab *t, const char *client, const uint8_t *ski, unsigned op,
                    bool denied, bool failed)
{
	add(t, client, ski, op, 1, denied, failed && !denied);
}

void kwd_audit_hand_in(struct kwd_audit *a, struct kwd_audit_tab *t)
{
	if (t->n == 0 && t->dropped == 0)
		return;
	struct handed *h = malloc(sizeof(*h));
	if (h == NULL) /* keep counting into t: the next hand-in carries it */
		return;
	h->tab = *t;
	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&a->lock);
	h->next = a->pending;
	a->pending = h;
	pthread_mutex_unlock(&a->lock);
}

/* ---- the writer ---- */

uint64_t kwd_audit_next_boundary(uint64_t now_ns)
{
	return (now_ns / KWD_AUDIT_INTERVAL_NS + 1) * KWD_AUDIT_INTERVAL_NS;
}

static int open_fd(const char *path)
{
	/* Standard output is dup'ed so that the log owns (and closes) its descriptor either way. */
	int fd = path == NULL
	             ? fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3)
	             : open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
	return fd < 0 ? -errno : fd;
}

int kwd_audit_open(struct kwd_audit **out, const char *path, char *err, size_t errlen)
{
	struct kwd_audit *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return -ENOMEM;
	a->fd = -1;
	if (strcmp(path, "-") != 0 && (a->path = strdup(path)) == NULL) {
		free(a);
		return -ENOMEM;
	}
	int fd = open_fd(a->path);
	if (fd < 0) {
		snprintf(err, errlen,
		         "--audit-log %s: %s; fix: give a writable file, or - for "
		         "standard output",
		         path, strerror(-fd));
		free(a->path);
		free(a);
		return fd;
	}
	a->fd = fd;
	pthread_mutex_init(&a->lock, NULL);
	*out = a;
	return 0;
}

int kwd_audit_reopen(struct kwd_audit *a)
{
	if (a->path == NULL)
		return 0;
	int fd = open_fd(a->path);
	if (fd < 0) {
		kw_error("--audit-log %s: cannot reopen: %s; still writing to the old file",
		         a->path, strerror(-fd));
		return fd;
	}
	close(a->fd);
	a->fd = fd;
	return 0;
}

static int cmp_entry(const void *x, const void *y)
{
	const struct entry *a = *(const struct entry *const *)x,
	                   *b = *(const struct entry *const *)y;
	int c = strcmp(a->client, b->client);
	if (c == 0)
		c = (int)a->has_ski - (int)b->has_ski;
	if (c == 0 && a->has_ski)
		c = memcmp(a->ski, b->ski, KW_SKI_LEN);
	if (c == 0)
		c = (int)a->op - (int)b->op;
	return c;
}

/* format writes one line per entry of t, sorted, into out. */
static int format(const struct kwd_audit_tab *t, struct kw_buf *out)
{
	struct entry **v = malloc((t->n ? t->n : 1) * sizeof(*v));
	if (v == NULL)
		return -ENOMEM;
	size_t n = 0;
	for (size_t i = 0; i < t->cap; i++)
		if (t->e[i].client != NULL)
			v[n++] = &t->e[i];
	qsort(v, n, sizeof(*v), cmp_entry);

	char when[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	int rc = 0;
	for (size_t i = 0; rc == 0 && i < n; i++) {
		char ski[2 * KW_SKI_LEN + 1] = "unknown";
		for (size_t j = 0; v[i]->has_ski && j < KW_SKI_LEN; j++)
			snprintf(ski + 2 * j, 3, "%02x", v[i]->ski[j]);
		rc = kw_buf_appendf(
		    out,
		    "time=%s interval_s=%llu client=%s key=%s op=%s requests=%llu "
		    "denied=%llu failed=%llu\n",
		    when, (unsigned long long)(KWD_AUDIT_INTERVAL_NS / 1000000000u), v[i]->client,
		    ski, v[i]->op == KWD_ACL_DECRYPT ? "decrypt" : "sign",
		    (unsigned long long)v[i]->requests, (unsigned long long)v[i]->denied,
		    (unsigned long long)v[i]->failed);
	}
	if (rc == 0 && t->dropped > 0)
		rc = kw_buf_appendf(out, "time=%s interval_s=%llu dropped=%llu\n", when,
		                    (unsigned long long)(KWD_AUDIT_INTERVAL_NS / 1000000000u),
		                    (unsigned long long)t->dropped);
	free(v);
	return rc;
}

static void write_all(struct kwd_audit *a, const struct kw_buf *b)
{
	const uint8_t *p = kw_buf_head(b);
	size_t left = kw_buf_unread(b);
	while (left > 0) {
		ssize_t n = write(a->fd, p, left);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			kw_error("--audit-log: write failed: %s; %zu bytes of audit lines lost",
			         n < 0 ? strerror(errno) : "no progress", left);
			return;
		}
		p += n;
		left -= (size_t)n;
	}
}

void kwd_audit_flush(struct kwd_audit *a)
{
	pthread_mutex_lock(&a->lock);
	struct handed *h = a->pending;
	a->pending = NULL;
	pthread_mutex_unlock(&a->lock);
	if (h == NULL)
		return;

	struct kwd_audit_tab all = {0};
	while (h != NULL) {
		struct handed *next = h->next;
		for (size_t i = 0; i < h->tab.cap; i++) {
			const struct entry *e = &h->tab.e[i];
			if (e->client != NULL)
				add(&all, e->client, e->has_ski ? e->ski : NULL, e->op, e->requests,
				    e->denied, e->failed);
		}
		all.dropped += h->tab.dropped;
		tab_clear(&h->tab);
		free(h);
		h = next;
	}
	struct kw_buf out = {0};
	if (format(&all, &out) < 0)
		kw_error("--audit-log: out of memory; an interval's audit lines are lost");
	else
		write_all(a, &out);
	kw_buf_cleanup(&out);
	tab_clear(&all);
}

static void on_timer(struct kw_loop *loop, void *arg)
{
	struct kwd_audit *a = arg;
	kwd_audit_flush(a);
	uint64_t next = kwd_audit_next_boundary(kw_now_ns()) + WRITE_DELAY_NS;
	if (kw_timer_start_at(loop, &a->timer, next) < 0)
		kw_error("--audit-log: cannot re-arm the writer; no more audit lines");
}

int kwd_audit_start(struct kwd_audit *a, struct kw_loop *loop)
{
	a->loop = loop;
	kw_timer_init(&a->timer, on_timer, a);
	return kw_timer_start_at(loop, &a->timer,
	                         kwd_audit_next_boundary(kw_now_ns()) + WRITE_DELAY_NS);
}

void kwd_audit_free(struct kwd_audit *a)
{
	if (a == NULL)
		return;
	if (a->loop != NULL)
		kw_timer_stop(a->loop, &a->timer);
	kwd_audit_flush(a);
	while (a->pending != NULL) {
		struct handed *h = a->pending;
		a->pending = h->next;
		tab_clear(&h->tab);
		free(h);
	}
	pthread_mutex_destroy(&a->lock);
	if (a->fd >= 0)
		close(a->fd);
	free(a->path);
	free(a);
}
