/*
 * test_backend_threads.c - the threads backend with real keys: results
 * verify, every op completes exactly once, -EAGAIN when the rings are full
 * and progress after a poll, the wake-up eventfd is written only when armed,
 * detached ops are completed quietly, and freeing with ops in flight
 * completes them all.
 */
#include <poll.h>
#include <unistd.h>

#include "backend_fixture.h"

static int fd_readable(int fd, int timeout_ms)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, timeout_ms) == 1;
}

static void test_full_and_progress(void)
{
	struct kw_backend *b = NULL;
	struct top *ops[9];
	CHECK_EQ(kw_backend_threads_new(&b, 2, 3), 0); /* rounded up to 4 per thread */
	CHECK(strcmp(b->ops->name, "threads") == 0);
	for (int i = 0; i < 8; i++) {
		ops[i] = new_op(i % 2 ? rsa : p256);
		CHECK_EQ(kw_backend_submit(b, &ops[i]->op), 0);
	}
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_ASYM), 8);
	CHECK_EQ(kw_backend_inflight(b, KW_OPK_OTHER), 0);
	ops[8] = new_op(rsa);
	CHECK_EQ(kw_backend_submit(b, &ops[8]->op), -EAGAIN);
	CHECK(!kw_op_is_done(&ops[8]->op));
	/* Completions free slots; then the refused op goes in. */
	int got = 0;
	while (got == 0)
		got = poll_all(b, 1);
	CHECK_EQ(kw_backend_submit(b, &ops[8]->op), 0);
	got += poll_all(b, 9 - got);
	CHECK_EQ(got, 9);
	CHECK_EQ(kw_backend_inflight_all(b), 0);
	for (int i = 0; i < 9; i++) {
		CHECK_EQ(ops[i]->done_calls, 1);
		CHECK_EQ(ops[i]->status_seen, 0);
		CHECK(verifies(ops[i]));
		kw_op_unref(&ops[i]->op);
	}
	struct kw_threads_stats st;
	CHECK_EQ(kw_backend_threads_stats(b, &st), 0);
	CHECK_EQ(st.submitted, 9);
	CHECK_EQ(st.completed, 9);
	CHECK_EQ(st.eagain, 1);
	CHECK_EQ(st.wakeups, 0); /* never armed */
	kw_backend_free(b);
}

static void test_wakeup(void)
{
	struct kw_backend *b = NULL;
	CHECK_EQ(kw_backend_threads_new(&b, 1, 16), 0);
	int efd = kw_backend_wake_fd(b);
	CHECK(efd >= 0);

	/* Not armed: a completion does not touch the eventfd. */
	struct top *t = new_op(rsa);
	CHECK_EQ(kw_backend_submit(b, &t->op), 0);
	/* Wait for the crypto thread's result (bounded), not a fixed time: a loaded machine
	 * may take longer than any fixed sleep. The ring push follows the result at once. */
	for (int waited = 0; *(volatile size_t *)&t->op.out_len == 0 && waited < 10000; waited += 5)
		sleep_ms(5);
	sleep_ms(20);
	CHECK(!fd_readable(efd, 0));
	/* Arming with a completion already waiting says "don't sleep". */
	CHECK(!kw_backend_arm(b));
	CHECK(!fd_readable(efd, 0));
	CHECK_EQ(kw_backend_poll(b, 10), 1);
	CHECK_EQ(t->done_calls, 1);
	kw_op_unref(&t->op);

	/* Armed, nothing pending: sleep; the completion writes the eventfd once. */
	for (int round = 0; round < 20; round++) {
		t = new_op(round % 2 ? rsa : p256);
		CHECK_EQ(kw_backend_submit(b, &t->op), 0);
		if (kw_backend_arm(b)) {
			CHECK(fd_readable(efd, 5000));
			kw_backend_disarm(b);
			kw_backend_drain_wake_fd(b);
			CHECK(!fd_readable(efd, 0));
		}
		CHECK_EQ(poll_all(b, 1), 1);
		CHECK_EQ(t->done_calls, 1);
		CHECK(verifies(t));
		kw_op_unref(&t->op);
	}
	/* Armed with nothing in flight: no write ever comes. */
	CHECK(kw_backend_arm(b));
	CHECK(!fd_readable(efd, 50));
	kw_backend_disarm(b);
	struct kw_threads_stats st;
	kw_backend_threads_stats(b, &st);
	CHECK(st.wakeups >= 1 && st.wakeups <= 20);
	kw_backend_free(b);
}

static void test_many_and_detach(void)
{
	enum { N = 3000 };
	struct kw_backend *b = NULL;
	static struct top *ops[N];
	CHECK_EQ(kw_backend_threads_new(&b, 2, 64), 0);
	int submitted = 0, completed = 0, eagain = 0, before = released;
	uint64_t end = kw_now_ns() + 30000000000ull;
	while ((submitted < N || completed < submitted) && kw_now_ns() < end) {
		while (submitted < N) {
			if (ops[submitted] == NULL)
				ops[submitted] = new_op(submitted % 7 ? p256 : rsa);
			int rc = kw_backend_submit(b, &ops[submitted]->op);
			if (rc == -EAGAIN) {
				eagain++;
				break;
			}
			CHECK_EQ(rc, 0);
			/* Every tenth owner goes away at once: detach and drop its reference. */
			if (submitted % 10 == 3) {
				kw_op_detach(&ops[submitted]->op);
				kw_op_unref(&ops[submitted]->op);
				ops[submitted] = NULL;
			}
			submitted++;
		}
		completed += kw_backend_poll(b, 100);
	}
	CHECK_EQ(submitted, N);
	CHECK_EQ(completed, N);
	CHECK(eagain > 0);
	for (int i = 0; i < N; i++) {
		if (ops[i] == NULL)
			continue;
		CHECK_EQ(ops[i]->done_calls, 1);
		if (i % 97 == 0)
			CHECK(verifies(ops[i]));
		kw_op_unref(&ops[i]->op);
	}
	CHECK_EQ(released - before, N);

	/* Freeing with ops queued: each completes once, computed or cancelled. */
	struct top *left[40];
	int accepted = 0;
	for (int i = 0; i < 40; i++) {
		left[i] = new_op(rsa);
		if (kw_backend_submit(b, &left[i]->op) == 0)
			accepted++;
	}
	kw_backend_free(b);
	for (int i = 0; i < 40; i++) {
		if (i < accepted) {
			CHECK_EQ(left[i]->done_calls, 1);
			CHECK(left[i]->status_seen == 0 || left[i]->status_seen == -KW_ECANCELED);
		}
		kw_op_unref(&left[i]->op);
	}
}

static void test_bad_sizes(void)
{
	struct kw_backend *b = NULL;
	CHECK_EQ(kw_backend_threads_new(&b, 0, 16), -EINVAL);
	CHECK_EQ(kw_backend_threads_new(&b, 1, 1), -EINVAL);
}

int main(void)
{
	backend_fixture_keys();
	test_full_and_progress();
	test_wakeup();
	test_many_and_detach();
	test_bad_sizes();
	backend_fixture_free();
	CHECK_DONE();
}
