/*
 * test_worker_faults.c - a keywayd worker recovers when its loop refuses a
 * timer or a watcher (issue 12, item 12), with the loop's test-only fault
 * injection (loop_fault.h) and a Unix listener of this test:
 *
 *  - EMFILE with no reserve descriptor pauses accepting; if the pause timer
 *    cannot be armed the listener is watched again at once, and if the
 *    listener cannot be watched again when the timer fires, the timer is
 *    re-armed: either way the waiting client is served once descriptors
 *    are back;
 *  - a connection whose watcher cannot be registered is closed, its slot
 *    given back, and the next one served;
 *  - a pipelined burst past the per-turn budget whose kick cannot be armed
 *    is answered in full;
 *  - an idle timer that cannot be re-armed closes its connection instead
 *    of leaving it without a timeout;
 *  - a drain whose deadline cannot be armed closes what is left at once and
 *    the worker ends.
 *
 * It includes worker.c to reach the worker's reserve descriptor and thread.
 */
#include "worker.c"

#include <sys/un.h>
#include <time.h>

#include <openssl/err.h>

#include "check.h"
#include "fault_wait.h"
#include "fd_fill.h"
#include "keygen.h"
#include "keyway/buf.h"
#include "keyway/protocol.h"
#include "keyway/loop_fault.h"
#include "worker_fixture.h"

/* conn.c's EXEC_BUDGET: requests one connection gets answered per loop turn. */
#define EXEC_BUDGET_FOR_TEST 256

static char *dir;

/* read_answer reads one frame; its opcode, or -1. */
static int read_answer(int fd)
{
	uint8_t hdr[KW_HEADER_LEN], body[KW_PADDED_LEN];
	struct kw_header h;
	struct kw_msg r;

	if (recv(fd, hdr, sizeof(hdr), MSG_WAITALL) != (ssize_t)sizeof(hdr) ||
	    kw_header_parse(&h, hdr, sizeof(hdr)) != 0 || h.length > sizeof(body) ||
	    recv(fd, body, h.length, MSG_WAITALL) != (ssize_t)h.length ||
	    kw_msg_parse(&r, body, h.length) != 0)
		return -1;
	return r.opcode;
}

/* ping_n sends n pings in one write and returns how many PONGs came back. */
static int ping_n(int fd, int n)
{
	struct kw_buf b = KW_BUF_INIT;
	struct kw_msg ping = {.has_opcode = true, .opcode = KW_OP_PING};
	int pongs = 0;

	for (int i = 0; i < n; i++)
		CHECK_EQ(kw_msg_encode(&b, (uint32_t)i + 1, &ping, false), 0);
	CHECK_EQ(send(fd, kw_buf_head(&b), kw_buf_unread(&b), MSG_NOSIGNAL),
	         (long long)kw_buf_unread(&b));
	kw_buf_cleanup(&b);
	for (int i = 0; i < n && read_answer(fd) == KW_OP_PONG; i++)
		pongs++;
	return pongs;
}

static struct kwd_worker *make(struct kwd_gen_slot *slot, int lfd, uint64_t idle_ns,
                               size_t out_bound, atomic_uint *count)
{
	struct kwd_worker_config cfg = {
	    .nconns = count,
	    .unix_fd = lfd,
	    .tcp_fd = -1,
	    .gens = slot,
	    .out_bound = out_bound,
	    .idle_ns = idle_ns,
	    .drain_ms = 60000, /* far beyond any bound below: only its failure ends a drain */
	};
	struct kwd_worker *w = NULL;
	CHECK_EQ(kwd_worker_new(&w, &cfg), 0);
	return w;
}

/* stop drains w and waits (at most 3 s) for its thread to end; true if it did. */
static bool stop(struct kwd_worker *w)
{
	struct timespec ts;
	kwd_worker_drain(w);
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += 3;
	if (pthread_timedjoin_np(w->thread, NULL, &ts) != 0)
		return false;
	w->started = false;
	return true;
}

/*
 * EMFILE with no reserve: accepting pauses. fault_mask says which call
 * fails: the pause timer's arming (the listener is then watched again at
 * once), or the listener's watch when the pause ends (the timer is then
 * re-armed), or both in a row (the worker's hook then retries the watch
 * every turn, its wait bounded). Each way the client that waited is served
 * once descriptors are free again; with the failure unhandled the worker would never accept
 * again.
 */
static void test_accept_pause(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd,
                              unsigned fault_mask, unsigned count)
{
	struct kwd_worker *w = make(slot, lfd, 30000000000ull, 1024 * KW_PADDED_LEN, NULL);
	if (w == NULL)
		return;
	/* Another thread took the reserve's slot: the case where accepting must pause. */
	close(w->reserve_fd);
	w->reserve_fd = -1;
	CHECK_EQ(kwd_worker_start(w), 0);

	int fd = client();
	kw_fault_arm(fault_mask, 1, count);
	fd_fill(lfd);
	CHECK_EQ(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
	CHECK(fault_wait_fired(count));
	usleep(150000); /* a pause or two with the table still full */
	fd_unfill();
	kw_fault_disarm();
	CHECK_EQ(kw_fault_fired(), count);
	CHECK_EQ(ping_n(fd, 1), 1);
	/* And it goes on accepting. */
	int again = dial(sa);
	CHECK_EQ(ping_n(again, 1), 1);
	CHECK(stop(w));
	CHECK(reads_eof(fd));
	close(fd);
	close(again);
	kwd_worker_free(w);
}

/* A connection that cannot be watched is closed, its slot given back; the next is served. */
static void test_open_fails(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd)
{
	atomic_uint count = 0;
	struct kwd_worker *w = make(slot, lfd, 30000000000ull, 1024 * KW_PADDED_LEN, &count);
	if (w == NULL)
		return;
	CHECK_EQ(kwd_worker_start(w), 0);
	kw_fault_arm(KW_FAULT_IO, 1, 1);
	int first = dial(sa);
	CHECK(reads_eof(first));
	CHECK_EQ(kw_fault_fired(), 1);
	kw_fault_disarm();
	int second = dial(sa);
	CHECK_EQ(ping_n(second, 1), 1);
	CHECK_EQ(atomic_load(&count), 1); /* the failed one's slot came back */
	CHECK(stop(w));
	CHECK_EQ(atomic_load(&count), 0);
	close(first);
	close(second);
	kwd_worker_free(w);
}

/*
 * More pipelined requests than one turn answers (EXEC_BUDGET): the rest wait
 * for a kick timer. With every timer refused they are answered at once
 * instead; none is dropped and the connection stays open.
 */
static void test_kick_fails(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd)
{
	enum { N = 3 * EXEC_BUDGET_FOR_TEST };
	struct kwd_worker *w = make(slot, lfd, 30000000000ull, 1024 * KW_PADDED_LEN, NULL);
	if (w == NULL)
		return;
	CHECK_EQ(kwd_worker_start(w), 0);
	int fd = dial(sa);
	CHECK_EQ(ping_n(fd, 1), 1); /* open, idle timer armed */
	kw_fault_arm(KW_FAULT_TIMER, 1, 1u << 30);
	CHECK_EQ(ping_n(fd, N), N);
	CHECK(kw_fault_fired() >= 1);
	kw_fault_disarm();
	CHECK_EQ(ping_n(fd, 1), 1);
	CHECK(stop(w));
	close(fd);
	kwd_worker_free(w);
}

/*
 * A connection that was active since its idle timer was armed gets the timer
 * re-armed when it fires; refused, the connection is closed rather than left
 * with no timeout at all.
 */
static void test_idle_rearm_fails(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd)
{
	struct kwd_worker *w = make(slot, lfd, 1000000000ull, 1024 * KW_PADDED_LEN, NULL);
	if (w == NULL)
		return;
	CHECK_EQ(kwd_worker_start(w), 0);
	int fd = dial(sa);
	CHECK_EQ(ping_n(fd, 1), 1);
	usleep(300000);
	CHECK_EQ(ping_n(fd, 1), 1); /* the deadline moves past the armed timer */
	kw_fault_arm(KW_FAULT_TIMER, 1, 1u << 30);
	CHECK(reads_eof(fd)); /* within SO_RCVTIMEO (3 s); the timer fires at ~1 s */
	CHECK(kw_fault_fired() >= 1);
	kw_fault_disarm();
	int next = dial(sa);
	CHECK_EQ(ping_n(next, 1), 1);
	CHECK(stop(w));
	close(fd);
	close(next);
	kwd_worker_free(w);
}

/*
 * A drain whose deadline timer cannot be armed closes what is left now: a
 * client that never reads its answers would otherwise hold the drain (and
 * the worker) for ever.
 */
static void test_drain_deadline_fails(struct kwd_gen_slot *slot, const struct sockaddr_un *sa,
                                      int lfd)
{
	struct kwd_worker *w = make(slot, lfd, 30000000000ull, KW_PADDED_LEN, NULL);
	if (w == NULL)
		return;
	CHECK_EQ(kwd_worker_start(w), 0);
	int fd = dial(sa);
	CHECK(fill_with_pings(fd) > 0);
	kw_fault_arm(KW_FAULT_TIMER, 1, 1u << 30);
	CHECK(stop(w)); /* drain_ms is 60 s: only the refused deadline can end it this soon */
	CHECK(kw_fault_fired() >= 1);
	kw_fault_disarm();
	CHECK(reads_eof(fd));
	close(fd);
	kwd_worker_free(w);
}

int main(void)
{
	struct kwd_gen_slot slot;
	struct sockaddr_un sa;
	EVP_PKEY *key = gen_ec("P-256");

	dir = make_tmpdir();
	CHECK(dir != NULL && key != NULL);
	kwd_gen_slot_init(&slot);
	kwd_gen_slot_publish(&slot, gen_with(dir, 1, key, "a"));
	int lfd = listen_unix(dir, &sa);

	test_accept_pause(&slot, &sa, lfd, KW_FAULT_TIMER, 1);
	test_accept_pause(&slot, &sa, lfd, KW_FAULT_IO, 1);
	/* Both in a row (the pause timer, then the listener's watch): the hook retries. */
	test_accept_pause(&slot, &sa, lfd, KW_FAULT_TIMER | KW_FAULT_IO, 2);
	test_open_fails(&slot, &sa, lfd);
	test_kick_fails(&slot, &sa, lfd);
	test_idle_rearm_fails(&slot, &sa, lfd);
	test_drain_deadline_fails(&slot, &sa, lfd);

	close(lfd);
	kwd_gen_slot_cleanup(&slot);
	EVP_PKEY_free(key);
	rm_tree(dir);
	CHECK(ERR_peek_error() == 0);
	CHECK_DONE();
}
