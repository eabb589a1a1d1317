/* test_loop.c - the event loop: fd events, timer order, hooks, deferred frees, wake-ups. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "keyway/loop.h"

static int order[8], norder;

static void timer_fn(struct kw_loop *loop, void *arg)
{
	order[norder++] = (int)(intptr_t)arg;
}

static void test_timers_fire_in_deadline_order(void)
{
	struct kw_loop *loop;
	CHECK_EQ(kw_loop_new(&loop), 0);
	struct kw_timer t[4];
	for (int i = 0; i < 4; i++)
		kw_timer_init(&t[i], timer_fn, (void *)(intptr_t)i);
	kw_timer_start_ms(loop, &t[0], 30);
	kw_timer_start_ms(loop, &t[1], 10);
	kw_timer_start_ms(loop, &t[2], 20);
	kw_timer_start_ms(loop, &t[3], 15);
	kw_timer_stop(loop, &t[3]); /* a stopped timer never fires */
	CHECK(!kw_timer_active(&t[3]));
	norder = 0;
	for (int i = 0; i < 50 && norder < 3; i++)
		kw_loop_run_once(loop, 100);
	CHECK_EQ(norder, 3);
	CHECK_EQ(order[0], 1);
	CHECK_EQ(order[1], 2);
	CHECK_EQ(order[2], 0);
	kw_loop_free(loop);
}

struct pipe_ctx {
	struct kw_io io;
	int reads;
	char got[16];
};

static void on_read(struct kw_loop *loop, int fd, unsigned ev, void *arg)
{
	struct pipe_ctx *p = arg;
	if (ev & KW_EV_READ) {
		ssize_t n = read(fd, p->got, sizeof(p->got) - 1);
		if (n > 0)
			p->got[n] = '\0';
		p->reads++;
	}
}

static void test_io_read_and_modify(void)
{
	struct kw_loop *loop;
	int sv[2];
	CHECK_EQ(kw_loop_new(&loop), 0);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	struct pipe_ctx p = {0};
	kw_io_init(&p.io, on_read, &p);
	CHECK_EQ(kw_io_start(loop, &p.io, sv[0], KW_EV_READ), 0);
	CHECK_EQ(write(sv[1], "hello", 5), 5);
	kw_loop_run_once(loop, 1000);
	CHECK_EQ(p.reads, 1);
	CHECK(strcmp(p.got, "hello") == 0);
	/* No interest: data waits, no callback. */
	CHECK_EQ(kw_io_modify(loop, &p.io, 0), 0);
	CHECK_EQ(write(sv[1], "x", 1), 1);
	kw_loop_run_once(loop, 20);
	CHECK_EQ(p.reads, 1);
	CHECK_EQ(kw_io_modify(loop, &p.io, KW_EV_READ), 0);
	kw_loop_run_once(loop, 1000);
	CHECK_EQ(p.reads, 2);
	kw_io_stop(loop, &p.io);
	kw_io_stop(loop, &p.io); /* idempotent */
	close(sv[0]);
	close(sv[1]);
	kw_loop_free(loop);
}

/* Two watchers ready in one turn; the first frees the second's owner through the defer queue. */
struct victim {
	struct kw_io io;
	int *calls;
	int fd;
};
static struct victim *victims[2];
static int freed;

static void free_victim(void *p)
{
	struct victim *v = p;
	close(v->fd);
	free(v);
	freed++;
}

static void on_victim(struct kw_loop *loop, int fd, unsigned ev, void *arg)
{
	struct victim *v = arg;
	(*v->calls)++;
	for (int i = 0; i < 2; i++) {
		if (victims[i] == NULL)
			continue;
		kw_io_stop(loop, &victims[i]->io);
		CHECK_EQ(kw_loop_defer_free(loop, free_victim, victims[i]), 0);
		victims[i] = NULL;
	}
}

static void test_deferred_free_in_same_turn(void)
{
	struct kw_loop *loop;
	CHECK_EQ(kw_loop_new(&loop), 0);
	int calls = 0, peers[2];
	for (int i = 0; i < 2; i++) {
		int sv[2];
		CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
		victims[i] = calloc(1, sizeof(struct victim));
		victims[i]->calls = &calls;
		victims[i]->fd = sv[0];
		peers[i] = sv[1];
		kw_io_init(&victims[i]->io, on_victim, victims[i]);
		CHECK_EQ(kw_io_start(loop, &victims[i]->io, sv[0], KW_EV_READ), 0);
		CHECK_EQ(write(sv[1], "a", 1), 1);
	}
	freed = 0;
	kw_loop_run_once(loop, 1000);
	/* Only one handler ran: the other watcher was stopped before its event was dispatched. */
	CHECK_EQ(calls, 1);
	CHECK_EQ(freed, 2);
	close(peers[0]);
	close(peers[1]);
	kw_loop_free(loop);
}

static int hook_runs;
static void hook_fn(struct kw_loop *loop, void *arg)
{
	hook_runs++;
	kw_hook_remove(loop, arg); /* removing itself while running is allowed */
}

static void *waker(void *arg)
{
	usleep(20000);
	kw_loop_wake(arg);
	return NULL;
}

static void test_hooks_and_wake(void)
{
	struct kw_loop *loop;
	CHECK_EQ(kw_loop_new(&loop), 0);
	struct kw_hook h;
	kw_hook_init(&h, hook_fn, &h);
	kw_hook_add(loop, &h);
	kw_loop_run_once(loop, 0);
	kw_loop_run_once(loop, 0);
	CHECK_EQ(hook_runs, 1);
	pthread_t th;
	pthread_create(&th, NULL, waker, loop);
	/* Without the wake this would wait 10 s; the test's CTest timeout would catch a hang. */
	kw_loop_run_once(loop, 10000);
	pthread_join(th, NULL);
	kw_loop_stop(loop);
	CHECK(kw_loop_stopped(loop));
	CHECK_EQ(kw_loop_run(loop), 0);
	kw_loop_free(loop);
}

static void bound_wait_fn(struct kw_loop *loop, void *arg)
{
	(void)arg;
	kw_loop_wake_within(loop, 1);
}

/* A hook bounds the turn's wait: with nothing to wake it, the turn still returns. */
static void test_wake_within(void)
{
	struct kw_loop *loop;
	CHECK_EQ(kw_loop_new(&loop), 0);
	struct kw_hook h;
	kw_hook_init(&h, bound_wait_fn, NULL);
	kw_hook_add(loop, &h);
	/* Without the bound these would wait for ever; CTest's timeout would catch a hang. */
	CHECK_EQ(kw_loop_run_once(loop, -1), 0);
	CHECK_EQ(kw_loop_run_once(loop, -1), 0);
	kw_hook_remove(loop, &h);
	/* A bound lasts one turn only: now a zero-timeout turn is not lengthened. */
	CHECK_EQ(kw_loop_run_once(loop, 0), 0);
	kw_loop_free(loop);
}

static uint64_t fired_ns;

static void stamp_fn(struct kw_loop *loop, void *arg)
{
	(void)loop, (void)arg;
	fired_ns = kw_now_ns();
}

/*
 * best_latency runs 20 timers of 200 us one after another and returns the
 * shortest time from start to callback: under load some wake late, but an
 * ordinary timer never wakes before the next whole millisecond.
 */
static uint64_t best_latency(bool precise, bool *early)
{
	struct kw_loop *loop;
	struct kw_timer t;
	uint64_t best = UINT64_MAX;
	CHECK_EQ(kw_loop_new(&loop), 0);
	if (precise)
		kw_timer_init_precise(&t, stamp_fn, NULL);
	else
		kw_timer_init(&t, stamp_fn, NULL);
	*early = false;
	for (int i = 0; i < 20; i++) {
		uint64_t start = kw_now_ns();
		fired_ns = 0;
		CHECK_EQ(kw_timer_start_us(loop, &t, 200), 0);
		for (int turn = 0; turn < 100 && fired_ns == 0; turn++)
			kw_loop_run_once(loop, 100);
		CHECK(fired_ns != 0);
		if (fired_ns - start < 200000)
			*early = true;
		if (fired_ns - start < best)
			best = fired_ns - start;
	}
	kw_loop_free(loop);
	return best;
}

static void test_precise_timers(void)
{
	bool early;
	uint64_t coarse = best_latency(false, &early);
	CHECK(!early);
	CHECK(coarse >= 1000000); /* what precise timers are for */
	uint64_t fine = best_latency(true, &early);
	CHECK(!early);
	CHECK(fine < 900000);
}

int main(void)
{
	test_timers_fire_in_deadline_order();
	test_io_read_and_modify();
	test_deferred_free_in_same_turn();
	test_hooks_and_wake();
	test_wake_within();
	test_precise_timers();
	CHECK_DONE();
}
