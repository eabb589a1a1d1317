/*
 * keyway/loop.h - a small epoll event loop: fd watchers, one-shot timers on a
 * min-heap, and "before sleep" hooks that run each turn before the loop
 * waits (where batched output is flushed). One loop per thread; nothing here
 * is thread-safe except kw_loop_wake.
 */
#ifndef KEYWAY_LOOP_H
#define KEYWAY_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keyway/list.h"

struct kw_loop;

#define KW_EV_READ 0x1u
#define KW_EV_WRITE 0x2u
#define KW_EV_ERROR 0x4u /* EPOLLERR/EPOLLHUP; reported together with READ */

/* Called with the events that fired (KW_EV_*). */
typedef void (*kw_io_fn)(struct kw_loop *loop, int fd, unsigned events, void *arg);
typedef void (*kw_timer_fn)(struct kw_loop *loop, void *arg);
typedef void (*kw_hook_fn)(struct kw_loop *loop, void *arg);

/* An fd watcher, embedded in the caller's object. */
struct kw_io {
	int fd;          /* -1 when not registered */
	unsigned events; /* current interest set */
	bool exclusive;  /* registered with EPOLLEXCLUSIVE */
	kw_io_fn fn;     /* handler */
	void *arg;       /* handler argument */
};

/* A one-shot timer, embedded in the caller's object. */
struct kw_timer {
	uint64_t deadline_ns; /* CLOCK_MONOTONIC */
	size_t heap_index;    /* position in the heap; SIZE_MAX when stopped */
	kw_timer_fn fn;
	void *arg;
	bool precise; /* woken to the nanosecond (kw_timer_init_precise) */
};

/* A hook run every loop turn before waiting, embedded in the caller's object. */
struct kw_hook {
	struct kw_list link; /* in the loop's hooks while added */
	kw_hook_fn fn;
	void *arg;
};

/* kw_loop_new creates a loop; 0 or -errno. */
int kw_loop_new(struct kw_loop **out);
/* kw_loop_free frees the loop (NULL allowed); watchers must be removed first. */
void kw_loop_free(struct kw_loop *loop);

/* kw_now_ns returns CLOCK_MONOTONIC in nanoseconds. */
uint64_t kw_now_ns(void);
/* kw_loop_now_ns is the time cached at the start of the current turn. */
uint64_t kw_loop_now_ns(const struct kw_loop *loop);

/*
 * kw_io_init prepares a watcher; kw_io_start registers fd with interest
 * `events`; kw_io_modify changes the interest set; kw_io_stop unregisters
 * (safe to call on a stopped watcher). kw_io_start_exclusive registers with
 * EPOLLEXCLUSIVE (for a listening socket shared by several loops).
 * All return 0 or -errno.
 */
void kw_io_init(struct kw_io *io, kw_io_fn fn, void *arg);
int kw_io_start(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events);
int kw_io_start_exclusive(struct kw_loop *loop, struct kw_io *io, int fd, unsigned events);
int kw_io_modify(struct kw_loop *loop, struct kw_io *io, unsigned events);
void kw_io_stop(struct kw_loop *loop, struct kw_io *io);

/* Timers: (re)start fires once after ms/us; stopping a stopped timer is fine. */
void kw_timer_init(struct kw_timer *t, kw_timer_fn fn, void *arg);
/*
 * kw_timer_init_precise prepares a timer the loop wakes for at its deadline
 * to the nanosecond (through one timerfd per loop, armed for the earliest
 * timer when that one is precise), where an ordinary timer is woken for on
 * the next whole millisecond: for delays of a few hundred microseconds.
 * Without a timerfd (none left) it falls back to milliseconds.
 */
void kw_timer_init_precise(struct kw_timer *t, kw_timer_fn fn, void *arg);
int kw_timer_start_ms(struct kw_loop *loop, struct kw_timer *t, uint64_t ms);
int kw_timer_start_us(struct kw_loop *loop, struct kw_timer *t, uint64_t us);
int kw_timer_start_at(struct kw_loop *loop, struct kw_timer *t, uint64_t deadline_ns);
void kw_timer_stop(struct kw_loop *loop, struct kw_timer *t);
static inline bool kw_timer_active(const struct kw_timer *t)
{
	return t->heap_index != (size_t)-1;
}

/* Hooks run in registration order before each wait. */
void kw_hook_init(struct kw_hook *h, kw_hook_fn fn, void *arg);
void kw_hook_add(struct kw_loop *loop, struct kw_hook *h);
void kw_hook_remove(struct kw_loop *loop, struct kw_hook *h);

/*
 * kw_loop_run runs until kw_loop_stop. kw_loop_run_once runs one turn,
 * waiting at most timeout_ms (-1: until an event or timer). Both return 0 or
 * -errno on an epoll failure.
 */
int kw_loop_run(struct kw_loop *loop);
int kw_loop_run_once(struct kw_loop *loop, int timeout_ms);
void kw_loop_stop(struct kw_loop *loop);
bool kw_loop_stopped(const struct kw_loop *loop);

/*
 * kw_loop_defer_free runs fn(p) at the end of the current turn, after every
 * event of the turn was dispatched. Objects that embed a kw_io MUST be freed
 * this way (after kw_io_stop): epoll may have returned an event for them
 * that is still to be dispatched in this turn. 0 or -ENOMEM (then nothing is
 * deferred; the caller may leak rather than free early).
 */
int kw_loop_defer_free(struct kw_loop *loop, void (*fn)(void *p), void *p);

/*
 * kw_loop_forget_fds is for a forked child that inherited loop from a thread
 * that does not exist there: it closes the loop's own descriptors (epoll,
 * wake eventfd, timerfd) with close(2) only and leaves everything else. The
 * loop must not be used afterwards, nor freed (it is leaked deliberately).
 */
void kw_loop_forget_fds(struct kw_loop *loop);

/*
 * kw_loop_wake_within bounds the turn's coming wait to ms (the smallest of
 * the turn's calls wins), from the loop's thread, typically in a hook. It
 * needs no memory, unlike a timer: the way to retry something a refused
 * timer would have retried.
 */
void kw_loop_wake_within(struct kw_loop *loop, int ms);

/* kw_loop_wake makes a waiting kw_loop_run_once return; callable from any thread. */
void kw_loop_wake(struct kw_loop *loop);

#endif
