/* loop.c - epoll event loop with a timer heap and before-sleep hooks (see keyway/loop.h). */
#include "keyway/loop.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 256

#ifdef KW_FAULT_INJECTION
/* Test programs only (see loop_fault.h): libkeyway is never built with it. */
#include <stdatomic.h>

#include "keyway/loop_fault.h"

static atomic_uint fault_mask;     /* kinds armed; 0: off */
static atomic_uint fault_first;    /* the first call to fail, 1-based */
static atomic_uint fault_last;     /* the last one */
static atomic_uint fault_seen;     /* calls of the armed kinds since arming */
static atomic_uint fault_injected; /* failures made */

void kw_fault_arm(unsigned mask, unsigned nth, unsigned count)
{
	atomic_store(&fault_mask, 0);
	atomic_store(&fault_seen, 0);
	atomic_store(&fault_injected, 0);
	atomic_store(&fault_first, nth);
	atomic_store(&fault_last, nth + (count > 0 ? count - 1 : 0));
	atomic_store(&fault_mask, count > 0 ? mask : 0);
}

void kw_fault_disarm(void)
{
	atomic_store(&fault_mask, 0);
}

unsigned kw_fault_calls(void)
{
	return atomic_load(&fault_seen);
}

unsigned kw_fault_fired(void)
{
	return atomic_load(&fault_injected);
}

/* fault tells whether this call of kind must fail. */
static bool fault(unsigned kind)
{
	if ((atomic_load(&fault_mask) & kind) == 0)
		return false;
	unsigned n = atomic_fetch_add(&fault_seen, 1) + 1;
	if (n < atomic_load(&fault_first) || n > atomic_load(&fault_last))
		return false;
	atomic_fetch_add(&fault_injected, 1);
	return true;
}
#define FAULT(kind) fault(kind)
#else
#define FAULT(kind) false
#endif

struct kw_loop {
	int epfd;               /* epoll instance */
	int wakefd;             /* eventfd for kw_loop_wake */
	bool stopped;           /* kw_loop_stop was called */
	uint64_t now_ns;        /* time cached at the start of the turn */
	struct kw_timer **heap; /* min-heap of active timers by deadline */
	size_t nheap, capheap;
	struct kw_list hooks;      /* struct kw_hook.link, in registration order */
	struct kw_list *hook_next; /* next hook to run, so hooks may remove themselves */
	struct deferred *deferred; /* frees to run at the end of the turn */
	size_t ndeferred, capdeferred;
	int timerfd;           /* for precise timers; -1 until the first one waits */
	struct kw_io timer_io; /* watches timerfd */
	uint64_t timerfd_ns;   /* deadline timerfd is armed for; 0: disarmed */
	int wait_cap_ms;       /* kw_loop_wake_within for the next wait; -1: none */
};

struct deferred {
	void (*fn)(void *p);
	void *p;
};

uint64_t kw_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t kw_loop_now_ns(const struct kw_loop *loop)
{
	return loop->now_ns;
}

int kw_loop_new(struct kw_loop **out)
{
	struct kw_loop *loop = calloc(1, sizeof(*loop));
	if (loop == NULL)
		return -ENOMEM;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (loop->epfd < 0 || loop->wakefd < 0) {
		int rc = -errno;
		kw_loop_free(loop);
		return rc;
	}
	/* data.ptr == NULL marks the wake eventfd. */
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, loop->wakefd, &ev) < 0) {
		int rc = -errno;
		kw_loop_free(loop);
		return rc;
	}
	kw_list_init(&loop->hooks);
	loop->timerfd = -1;
	loop->wait_cap_ms = -1;
	loop->now_ns = kw_now_ns();
	*out = loop;
	return 0;
}

static void run_deferred(struct kw_loop *loop)
{
	/* fn may defer more; the index walk picks those up too. */
	for (size_t i = 0; i < loop->ndeferred; i++)
		loop->deferred[i].fn(loop->deferred[i].p);
	loop->ndeferred = 0;
}

int kw_loop_defer_free(struct kw_loop *loop, void (*fn)(void *p), void *p)
{
	if (loop->ndeferred == loop->capdeferred) {
		size_t cap = loop->capdeferred ? loop->capdeferred * 2 : 32;
		struct deferred *d = realloc(loop->deferred, cap * sizeof(*d));
		if (d == NULL)
			return -ENOMEM;
		loop->deferred = d;
		loop->capdeferred = cap;
	}
	loop->deferred[loop->ndeferred].fn = fn;
	loop->deferred[loop->ndeferred].p = p;
	loop->ndeferred++;
	return 0;
}

void kw_loop_free(struct kw_loop *loop)
{
	if (loop == NULL)
		return;
	if (loop->epfd >= 0)
		close(loop->epfd);
	if (loop->wakefd >= 0)
		close(loop->wakefd);
	if (loop->timerfd >= 0)
		close(loop->timerfd);
	run_deferred(loop);
	free(loop->deferred);
	free(loop->heap);
	free(loop);
}

void kw_loop_forget_fds(struct kw_loop *loop)
{
	int *fds[] = {&loop->epfd, &loop->wakefd, &loop->timerfd};

	for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++) {
		if (*fds[i] >= 0)
			(void)close(*fds[i]);
		*fds[i] = -1;
	}
}

/* ---- fd watchers ---- */

static uint32_t to_epoll(unsigned events)
{
	uint32_t e = 0;
	if (events & KW_EV_READ)
		e |= EPOLLIN | EPOLLRDHUP;
	if (events & KW_EV_WRITE)
		e |= EPOLLOUT;
	return e;
}

void kw_io_init(struct kw_io *io, kw_io_fn fn, void *arg)
{
	io->fd = -1;
	io->events = 0;
	io->exclusive = false;
	io->fn = fn;
	io->arg = arg;
}

static int io_add(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events, bool excl)
{
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
	/* EPOLLEXCLUSIVE accepts only EPOLLIN/OUT/WAKEUP/ET (EINVAL with EPOLLRDHUP). */
	if (excl)
		ev.events = (ev.events & ~(uint32_t)EPOLLRDHUP) | EPOLLEXCLUSIVE;
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return -errno;
	io->fd = fd;
	io->events = events;
	io->exclusive = excl;
	return 0;
}

int kw_io_start(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events)
{
	if (FAULT(KW_FAULT_IO))
		return -ENOMEM;
	return io_add(loop, io, fd, events, false);
}

int kw_io_start_exclusive(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events)
{
	if (FAULT(KW_FAULT_IO))
		return -ENOMEM;
	return io_add(loop, io, fd, events, true);
}

int kw_io_modify(struct kw_loop *loop, struct kw_io *io, unsigned events)
{
	if (io->fd < 0)
		return -EBADF;
	if (events == io->events)
		return 0;
	if (FAULT(KW_FAULT_IO))
		return -ENOMEM;
	/* EPOLLEXCLUSIVE registrations cannot be modified: re-add them. */
	if (io->exclusive) {
		int fd = io->fd;
		kw_io_stop(loop, io);
		return io_add(loop, io, fd, events, true);
	}
	struct epoll_event ev = {.events = to_epoll(events), .data.ptr = io};
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -errno;
	io->events = events;
	return 0;
}

void kw_io_stop(struct kw_loop *loop, struct kw_io *io)
{
	if (io->fd < 0)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->fd = -1;
	io->events = 0;
}

/* ---- timers: a binary min-heap of pointers, each timer knowing its index ---- */

static void heap_swap(struct kw_loop *loop, size_t a, size_t b)
{
	struct kw_timer *t = loop->heap[a];
	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_index = a;
	loop->heap[b]->heap_index = b;
}

static void heap_up(struct kw_loop *loop, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (loop->heap[p]->deadline_ns <= loop->heap[i]->deadline_ns)
			break;
		heap_swap(loop, i, p);
		i = p;
	}
}

static void heap_down(struct kw_loop *loop, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < loop->nheap && loop->heap[l]->deadline_ns < loop->heap[m]->deadline_ns)
			m = l;
		if (r < loop->nheap && loop->heap[r]->deadline_ns < loop->heap[m]->deadline_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(loop, i, m);
		i = m;
	}
}

void kw_timer_init(struct kw_timer *t, kw_timer_fn fn, void *arg)
{
	t->deadline_ns = 0;
	t->heap_index = (size_t)-1;
	t->fn = fn;
	t->arg = arg;
	t->precise = false;
}

void kw_timer_init_precise(struct kw_timer *t, kw_timer_fn fn, void *arg)
{
	kw_timer_init(t, fn, arg);
	t->precise = true;
}

void kw_timer_stop(struct kw_loop *loop, struct kw_timer *t)
{
	size_t i = t->heap_index;
	if (i == (size_t)-1)
		return;
	t->heap_index = (size_t)-1;
	loop->nheap--;
	if (i == loop->nheap)
		return;
	loop->heap[i] = loop->heap[loop->nheap];
	loop->heap[i]->heap_index = i;
	heap_up(loop, i);
	heap_down(loop, loop->heap[i]->heap_index);
}

int kw_timer_start_at(struct kw_loop *loop, struct kw_timer *t, uint64_t deadline_ns)
{
	kw_timer_stop(loop, t);
	if (FAULT(KW_FAULT_TIMER))
		return -ENOMEM;
	if (loop->nheap == loop->capheap) {
		size_t cap = loop->capheap ? loop->capheap * 2 : 64;
		struct kw_timer **h = realloc(loop->heap, cap * sizeof(*h));
		if (h == NULL)
			return -ENOMEM;
		loop->heap = h;
		loop->capheap = cap;
	}
	t->deadline_ns = deadline_ns;
	t->heap_index = loop->nheap;
	loop->heap[loop->nheap++] = t;
	heap_up(loop, t->heap_index);
	return 0;
}

int kw_timer_start_us(struct kw_loop *loop, struct kw_timer *t, uint64_t us)
{
	return kw_timer_start_at(loop, t, kw_now_ns() + us * 1000u);
}

int kw_timer_start_ms(struct kw_loop *loop, struct kw_timer *t, uint64_t ms)
{
	return kw_timer_start_at(loop, t, kw_now_ns() + ms * 1000000u);
}

static void run_timers(struct kw_loop *loop)
{
	/* Bounded so a timer that re-arms itself at "now" cannot starve I/O. */
	for (size_t n = loop->nheap; n > 0 && loop->nheap > 0 && !loop->stopped; n--) {
		struct kw_timer *t = loop->heap[0];
		if (t->deadline_ns > loop->now_ns)
			return;
		kw_timer_stop(loop, t);
		t->fn(loop, t->arg);
	}
}

/* ---- hooks ---- */

void kw_hook_init(struct kw_hook *h, kw_hook_fn fn, void *arg)
{
	kw_list_init(&h->link);
	h->fn = fn;
	h->arg = arg;
}

void kw_hook_add(struct kw_loop *loop, struct kw_hook *h)
{
	if (!kw_list_linked(&h->link))
		kw_list_add_tail(&loop->hooks, &h->link);
}

void kw_hook_remove(struct kw_loop *loop, struct kw_hook *h)
{
	if (!kw_list_linked(&h->link))
		return;
	if (loop->hook_next == &h->link)
		loop->hook_next = h->link.next;
	kw_list_del(&h->link);
}

static void run_hooks(struct kw_loop *loop)
{
	for (struct kw_list *n = loop->hooks.next; n != &loop->hooks; n = loop->hook_next) {
		struct kw_hook *h = kw_container_of(n, struct kw_hook, link);
		loop->hook_next = n->next;
		h->fn(loop, h->arg);
	}
	loop->hook_next = NULL;
}

/* ---- running ---- */

static void on_timerfd(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	uint64_t expirations;
	ssize_t r = read(fd, &expirations, sizeof(expirations));
	(void)r, (void)events, (void)arg;
	loop->timerfd_ns = 0; /* a one-shot timerfd is disarmed once it fired */
}

/*
 * timerfd_arm makes the loop's timerfd fire at deadline_ns, creating it the
 * first time. 0, or -errno: the caller then waits in whole milliseconds.
 */
static int timerfd_arm(struct kw_loop *loop, uint64_t deadline_ns)
{
	if (loop->timerfd < 0) {
		int fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
		if (fd < 0)
			return -errno;
		kw_io_init(&loop->timer_io, on_timerfd, NULL);
		/* io_add, not kw_io_start: a caller's fault injection counts only its own calls. */
		int rc = io_add(loop, &loop->timer_io, fd, KW_EV_READ, false);
		if (rc < 0) {
			close(fd);
			return rc;
		}
		loop->timerfd = fd;
	}
	if (loop->timerfd_ns == deadline_ns)
		return 0;
	struct itimerspec its = {0};
	its.it_value.tv_sec = (time_t)(deadline_ns / 1000000000u);
	its.it_value.tv_nsec = (long)(deadline_ns % 1000000000u);
	if (timerfd_settime(loop->timerfd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		return -errno;
	loop->timerfd_ns = deadline_ns;
	return 0;
}

int kw_loop_run_once(struct kw_loop *loop, int timeout_ms)
{
	struct epoll_event evs[MAX_EVENTS];

	run_hooks(loop);
	if (loop->stopped)
		return 0;
	if (loop->wait_cap_ms >= 0 && (timeout_ms < 0 || loop->wait_cap_ms < timeout_ms))
		timeout_ms = loop->wait_cap_ms;
	loop->wait_cap_ms = -1;
	if (loop->nheap > 0) {
		uint64_t now = kw_now_ns(), dl = loop->heap[0]->deadline_ns;
		/* Round up so a timer is never woken for early and then spun on. */
		int64_t ms = dl <= now ? 0 : (int64_t)((dl - now + 999999) / 1000000);
		/* A precise timer is woken by the timerfd, to the nanosecond. */
		if (ms > 0 && loop->heap[0]->precise && timerfd_arm(loop, dl) == 0)
			ms = -1;
		if (ms >= 0 && (timeout_ms < 0 || ms < timeout_ms))
			timeout_ms = ms > 1000000 ? 1000000 : (int)ms;
	}
	int n = epoll_wait(loop->epfd, evs, MAX_EVENTS, timeout_ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	loop->now_ns = kw_now_ns();
	for (int i = 0; i < n; i++) {
		struct kw_io *io = evs[i].data.ptr;
		if (io == NULL) {
			uint64_t v;
			ssize_t r = read(loop->wakefd, &v, sizeof(v));
			(void)r;
			continue;
		}
		unsigned ev = 0;
		if (evs[i].events & (EPOLLIN | EPOLLRDHUP))
			ev |= KW_EV_READ;
		if (evs[i].events & EPOLLOUT)
			ev |= KW_EV_WRITE;
		if (evs[i].events & (EPOLLERR | EPOLLHUP))
			ev |= KW_EV_ERROR | KW_EV_READ;
		/* An earlier handler of this batch may have stopped this watcher;
		 * its owner is still allocated because frees are deferred. */
		if (io->fd < 0)
			continue;
		io->fn(loop, io->fd, ev, io->arg);
		if (loop->stopped)
			break;
	}
	run_timers(loop);
	run_deferred(loop);
	return 0;
}

int kw_loop_run(struct kw_loop *loop)
{
	while (!loop->stopped) {
		int rc = kw_loop_run_once(loop, -1);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void kw_loop_wake_within(struct kw_loop *loop, int ms)
{
	if (ms >= 0 && (loop->wait_cap_ms < 0 || ms < loop->wait_cap_ms))
		loop->wait_cap_ms = ms;
}

void kw_loop_stop(struct kw_loop *loop)
{
	loop->stopped = true;
	kw_loop_wake(loop);
}

bool kw_loop_stopped(const struct kw_loop *loop)
{
	return loop->stopped;
}

void kw_loop_wake(struct kw_loop *loop)
{
	uint64_t one = 1;
	ssize_t w = write(loop->wakefd, &one, sizeof(one));
	(void)w;
}
