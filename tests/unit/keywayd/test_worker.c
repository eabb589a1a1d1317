/*
 * test_worker.c - a worker thread on a Unix listener of this test: it
 * accepts and answers, picks up a newly published generation at its next
 * request, drains (answered, closed, thread ended) on request, and at its
 * drain deadline closes a connection that would never finish, and at its
 * connection cap closes a newcomer when none can be evicted (Unix-socket
 * connections never are), counting it refused.
 */
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>

#include "check.h"
#include "keygen.h"
#include "keyway/buf.h"
#include "keyway/keyid.h"
#include "keyway/loop.h"
#include "keyway/protocol.h"
#include "worker_fixture.h"
#include "worker.h"

static char *dir;

/* ask sends m and returns the answer's opcode (first payload byte in *err), or -1. */
static int ask(int fd, const struct kw_msg *m, uint8_t *err)
{
	struct kw_buf b = KW_BUF_INIT;
	uint8_t frame[KW_PADDED_LEN];
	struct kw_header h;
	struct kw_msg r;
	int opcode = -1;

	CHECK_EQ(kw_msg_encode(&b, 1, m, true), 0);
	CHECK_EQ(send(fd, kw_buf_head(&b), kw_buf_unread(&b), MSG_NOSIGNAL),
	         (long long)kw_buf_unread(&b));
	kw_buf_cleanup(&b);
	CHECK_EQ(recv(fd, frame, sizeof(frame), MSG_WAITALL), sizeof(frame));
	if (kw_header_parse(&h, frame, sizeof(frame)) == 0 && h.length == sizeof(frame) - 8 &&
	    kw_msg_parse(&r, frame + KW_HEADER_LEN, h.length) == 0) {
		opcode = r.opcode;
		*err = r.payload.len > 0 ? r.payload.data[0] : 0;
	}
	return opcode;
}

static struct kwd_worker *start_capped(struct kwd_gen_slot *slot, int lfd, size_t out_bound,
                                       uint64_t drain_ms, unsigned max_conns, atomic_uint *count)
{
	struct kwd_worker_config cfg = {
	    .max_conns = max_conns,
	    .nconns = count,
	    .id = 0,
	    .tcp_fd = -1,
	    .unix_fd = lfd,
	    .gens = slot,
	    .out_bound = out_bound,
	    .idle_ns = 30000000000ull,
	    .drain_ms = drain_ms,
	};
	struct kwd_worker *w = NULL;
	CHECK_EQ(kwd_worker_new(&w, &cfg), 0);
	if (w != NULL)
		CHECK_EQ(kwd_worker_start(w), 0);
	return w;
}

static struct kwd_worker *start(struct kwd_gen_slot *slot, int lfd, size_t out_bound,
                                uint64_t drain_ms)
{
	return start_capped(slot, lfd, out_bound, drain_ms, 0, NULL);
}

/* At the cap with nothing evictable, a newcomer is closed and counted; a slot frees on close. */
static void test_cap(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd)
{
	atomic_uint count = 0;
	struct kwd_worker *w = start_capped(slot, lfd, 1024 * KW_PADDED_LEN, 1000, 1, &count);
	if (w == NULL)
		return;
	uint8_t e = 0xff;
	struct kw_msg ping = {.has_opcode = true, .opcode = KW_OP_PING};
	int first = dial(sa);
	CHECK_EQ(ask(first, &ping, &e), KW_OP_PONG);
	int second = dial(sa);
	CHECK(reads_eof(second));
	CHECK_EQ(ask(first, &ping, &e), KW_OP_PONG);
	close(second);
	close(first);
	/* The first one's slot comes back once the worker has seen it close. */
	for (int i = 0; i < 300 && atomic_load(&count) != 0; i++)
		usleep(10000);
	CHECK_EQ(atomic_load(&count), 0);
	int third = dial(sa);
	CHECK_EQ(ask(third, &ping, &e), KW_OP_PONG);
	struct kwd_wmetrics *m = kwd_worker_metrics(w);
	CHECK(atomic_load(&m->refused) >= 1);
	CHECK_EQ(atomic_load(&m->evicted), 0);
	kwd_worker_drain(w);
	kwd_worker_join(w);
	CHECK_EQ(atomic_load(&count), 0);
	close(third);
	kwd_worker_free(w);
}

static void test_serve_reload_drain(struct kwd_gen_slot *slot, const struct sockaddr_un *sa,
                                    int lfd, EVP_PKEY *key_b)
{
	struct kwd_worker *w = start(slot, lfd, 1024 * KW_PADDED_LEN, 3000);
	if (w == NULL)
		return;
	int fd = dial(sa);
	uint8_t e = 0xff, hash[32] = {7};
	struct kw_msg ping = {.has_opcode = true, .opcode = KW_OP_PING};
	struct kw_msg sign = {
	    .has_opcode = true, .opcode = KW_OP_ECDSA_SIGN_SHA256, .has_ski = true};
	sign.payload.data = hash;
	sign.payload.len = sizeof(hash);
	CHECK_EQ(kw_key_ski(key_b, sign.ski), 0);

	CHECK_EQ(ask(fd, &ping, &e), KW_OP_PONG);
	/* Key B is not in the generation the worker serves... */
	CHECK_EQ(ask(fd, &sign, &e), KW_OP_ERROR);
	CHECK_EQ(e, KW_ERR_KEY_NOT_FOUND);
	/* ...until a generation holding it is published: the next request sees it. */
	kwd_gen_slot_publish(slot, gen_with(dir, 2, key_b, "b"));
	CHECK_EQ(ask(fd, &sign, &e), KW_OP_RESPONSE);

	uint64_t t0 = kw_now_ns();
	kwd_worker_drain(w);
	CHECK(reads_eof(fd));
	kwd_worker_join(w); /* the thread ends once its last connection is closed */
	CHECK(kw_now_ns() - t0 < 3000000000ull);
	struct kwd_wmetrics *m = kwd_worker_metrics(w);
	CHECK_EQ(m->conns_total[KWD_TRANSPORT_UNIX], 1);
	CHECK_EQ(m->conns_open[KWD_TRANSPORT_UNIX], 0);
	CHECK_EQ(m->requests[KW_OP_PING], 1);
	CHECK_EQ(m->requests[KW_OP_ECDSA_SIGN_SHA256], 2);
	close(fd);
	kwd_worker_free(w);
}

/* A client that never reads its answers keeps output pending: the deadline ends it. */
static void test_drain_deadline(struct kwd_gen_slot *slot, const struct sockaddr_un *sa, int lfd)
{
	struct kwd_worker *w = start(slot, lfd, KW_PADDED_LEN, 200);
	if (w == NULL)
		return;
	int fd = dial(sa);
	CHECK(fill_with_pings(fd) > 0);

	uint64_t t0 = kw_now_ns();
	kwd_worker_drain(w);
	kwd_worker_join(w);
	uint64_t took = kw_now_ns() - t0;
	CHECK(took >= 150000000ull && took < 2000000000ull);
	CHECK(reads_eof(fd));
	CHECK_EQ(kwd_worker_metrics(w)->conns_open[KWD_TRANSPORT_UNIX], 0);
	close(fd);
	kwd_worker_free(w);
}

int main(void)
{
	struct kwd_gen_slot slot;
	struct sockaddr_un sa;
	EVP_PKEY *key_a = gen_ec("P-256"), *key_b = gen_ec("P-256");

	dir = make_tmpdir();
	CHECK(dir != NULL && key_a != NULL && key_b != NULL);
	kwd_gen_slot_init(&slot);
	kwd_gen_slot_publish(&slot, gen_with(dir, 1, key_a, "a"));
	int lfd = listen_unix(dir, &sa);

	test_serve_reload_drain(&slot, &sa, lfd, key_b);
	test_drain_deadline(&slot, &sa, lfd);
	test_cap(&slot, &sa, lfd);

	close(lfd);
	kwd_gen_slot_cleanup(&slot);
	EVP_PKEY_free(key_a);
	EVP_PKEY_free(key_b);
	rm_tree(dir);
	CHECK(ERR_peek_error() == 0);
	CHECK_DONE();
}
