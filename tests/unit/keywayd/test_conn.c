/*
 * test_conn.c - one keywayd connection over a socketpair on a kw_loop of its
 * own, with an environment of this test's making (no worker, no TLS): a ping
 * answered with its pong, pipelined requests answered in order, a version
 * mismatch answered and survived, slow pipelined requests yielding to another
 * connection after their time slice, a malformed frame closing only this
 * connection; the peer's close, drain, abort and the idle timeout each end it
 * with exactly one "closed" callback, and the counters follow.
 */
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>

#include "check.h"
#include "conn.h"
#include "keygen.h"
#include "keyway/buf.h"
#include "keyway/keyid.h"
#include "keyway/protocol.h"

#define TURNS 300 /* loop turns of up to 10 ms: 3 s before a wait gives up */

static uint8_t key_ski[KW_SKI_LEN];
static uint8_t slow_ski[KW_SKI_LEN]; /* P-384: a sign takes hundreds of microseconds */

/* The environment with a record of its callbacks. */
struct stub {
	struct kwd_conn_env env;
	struct kwd_wmetrics metrics;
	int refreshed;
	int closed;
	void *closed_owner;
};

static void stub_refresh(void *arg)
{
	struct stub *st = arg;
	st->refreshed++;
}

static void stub_closed(void *arg, void *owner)
{
	struct stub *st = arg;
	st->closed++;
	st->closed_owner = owner;
}

static void stub_init(struct stub *st, struct kw_loop *loop, struct kwd_executor *ex)
{
	memset(st, 0, sizeof(*st));
	st->env = (struct kwd_conn_env){
	    .loop = loop,
	    .metrics = &st->metrics,
	    .out_bound = 1024 * KW_PADDED_LEN,
	    .idle_ns = 30000000000ull,
	    .executor = ex,
	    .refresh = stub_refresh,
	    .closed = stub_closed,
	    .arg = st,
	};
}

/* open_pair serves one end of a socketpair as a Unix connection; returns the other end. */
static int open_pair(struct stub *st, struct kwd_conn **c)
{
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0)
		return -1;
	int rc = kwd_conn_open(c, &st->env, &st->closed_owner, sv[0], KWD_TRANSPORT_UNIX, NULL,
	                       "test-peer");
	CHECK_EQ(rc, 0);
	if (rc < 0) {
		close(sv[1]);
		return -1;
	}
	return sv[1];
}

static void send_bytes(int fd, const void *p, size_t len)
{
	CHECK_EQ(send(fd, p, len, MSG_NOSIGNAL), (long long)len);
}

static void send_msg(int fd, uint32_t id, const struct kw_msg *m)
{
	struct kw_buf b = KW_BUF_INIT;
	CHECK_EQ(kw_msg_encode(&b, id, m, true), 0);
	send_bytes(fd, kw_buf_head(&b), kw_buf_unread(&b));
	kw_buf_cleanup(&b);
}

static struct kw_msg ping(const char *text)
{
	struct kw_msg m = {.has_opcode = true, .opcode = KW_OP_PING};
	m.payload.data = (const uint8_t *)text;
	m.payload.len = strlen(text);
	return m;
}

/*
 * read_frame runs the loop until a whole frame has come back on fd and
 * decodes it into h and m (pointing into in). Returns 0, or -1 if the
 * connection ended or nothing came in time.
 */
static int read_frame(struct kw_loop *loop, int fd, struct kw_buf *in, struct kw_header *h,
                      struct kw_msg *m)
{
	for (int turn = 0; turn < TURNS; turn++) {
		if (kw_header_parse(h, kw_buf_head(in), kw_buf_unread(in)) == 0 &&
		    kw_buf_unread(in) >= (size_t)KW_HEADER_LEN + h->length)
			return kw_msg_parse(m, kw_buf_head(in) + KW_HEADER_LEN, h->length);
		kw_loop_run_once(loop, 10);
		if (kw_buf_reserve(in, 4096) < 0)
			return -1;
		ssize_t n = recv(fd, kw_buf_tail(in), in->cap - in->len, 0);
		if (n == 0)
			return -1;
		if (n > 0)
			in->len += (size_t)n;
	}
	return -1;
}

/* next_frame drops the frame read_frame returned last. */
static void next_frame(struct kw_buf *in, const struct kw_header *h)
{
	kw_buf_consume(in, (size_t)KW_HEADER_LEN + h->length);
}

/* wait_eof runs the loop until fd reads end of stream; false if it did not come. */
static bool wait_eof(struct kw_loop *loop, int fd)
{
	char buf[4096];
	for (int turn = 0; turn < TURNS; turn++) {
		kw_loop_run_once(loop, 10);
		ssize_t n = recv(fd, buf, sizeof(buf), 0);
		if (n == 0 || (n < 0 && errno == ECONNRESET))
			return true;
	}
	return false;
}

static void test_ping_and_pipeline(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	struct kw_buf in = KW_BUF_INIT;
	struct kw_header h;
	struct kw_msg m, req = ping("hello");

	CHECK_EQ(st->metrics.conns_open[KWD_TRANSPORT_UNIX], 1);
	CHECK_EQ(st->metrics.conns_total[KWD_TRANSPORT_UNIX], 1);
	send_msg(fd, 7, &req);
	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK_EQ(h.id, 7);
	CHECK_EQ(h.major, KW_PROTO_MAJOR);
	CHECK_EQ(KW_HEADER_LEN + h.length, KW_PADDED_LEN); /* padded, as gokeyless */
	CHECK_EQ(m.opcode, KW_OP_PONG);
	CHECK(m.payload.len == 5 && memcmp(m.payload.data, "hello", 5) == 0);
	next_frame(&in, &h);
	CHECK(st->refreshed >= 1);
	CHECK_EQ(st->metrics.requests[KW_OP_PING], 1);

	/* Three requests in one write come back in order: a sign, an unknown key, a ping. */
	uint8_t hash[32] = {1}, unknown[KW_SKI_LEN];
	memset(unknown, 0x5a, sizeof(unknown));
	struct kw_msg sign = {
	    .has_opcode = true, .opcode = KW_OP_ECDSA_SIGN_SHA256, .has_ski = true};
	memcpy(sign.ski, key_ski, KW_SKI_LEN);
	sign.payload.data = hash;
	sign.payload.len = sizeof(hash);
	struct kw_msg lost = sign;
	memcpy(lost.ski, unknown, KW_SKI_LEN);
	struct kw_buf out = KW_BUF_INIT;
	CHECK_EQ(kw_msg_encode(&out, 1, &sign, true), 0);
	CHECK_EQ(kw_msg_encode(&out, 2, &lost, true), 0);
	CHECK_EQ(kw_msg_encode(&out, 3, &req, true), 0);
	send_bytes(fd, kw_buf_head(&out), kw_buf_unread(&out));
	kw_buf_cleanup(&out);

	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK_EQ(h.id, 1);
	CHECK_EQ(m.opcode, KW_OP_RESPONSE);
	CHECK(m.payload.len > 8); /* a DER ECDSA signature */
	next_frame(&in, &h);
	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK_EQ(h.id, 2);
	CHECK_EQ(m.opcode, KW_OP_ERROR);
	CHECK(m.payload.len == 1 && m.payload.data[0] == KW_ERR_KEY_NOT_FOUND);
	next_frame(&in, &h);
	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK_EQ(h.id, 3);
	CHECK_EQ(m.opcode, KW_OP_PONG);
	next_frame(&in, &h);
	CHECK_EQ(st->metrics.requests[KW_OP_ECDSA_SIGN_SHA256], 2);
	CHECK_EQ(st->metrics.requests[KW_OP_PING], 2);

	/* A version mismatch is answered and the connection lives on. */
	const uint8_t v2[KW_HEADER_LEN] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x09};
	send_bytes(fd, v2, sizeof(v2));
	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK_EQ(h.id, 9);
	CHECK(m.opcode == KW_OP_ERROR && m.payload.len == 1 &&
	      m.payload.data[0] == KW_ERR_VERSION_MISMATCH);
	next_frame(&in, &h);
	CHECK_EQ(st->closed, 0);

	/* The peer closes: exactly one "closed", with the owner given at open. */
	close(fd);
	for (int turn = 0; turn < TURNS && st->closed == 0; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(st->closed, 1);
	CHECK(st->closed_owner == &st->closed_owner);
	CHECK_EQ(st->metrics.conns_open[KWD_TRANSPORT_UNIX], 0);
	kw_loop_run_once(loop, 0); /* the deferred free */
	kw_buf_cleanup(&in);
}

/*
 * A burst of pipelined requests whose answers the client reads only later
 * grows the connection's buffers; once everything is answered and read, what
 * the burst grew is given back (issue 12, item 4).
 */
static void test_burst_released(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	struct kw_msg req = ping("burst");
	struct kw_buf out = KW_BUF_INIT;
	for (uint32_t id = 1; id <= 64; id++)
		CHECK_EQ(kw_msg_encode(&out, id, &req, true), 0);

	/* Send 64-frame batches without reading the answers until they back up. */
	size_t peak = 0;
	unsigned sent = 0;
	for (int turn = 0; turn < TURNS && peak < 512 * 1024; turn++) {
		if (send(fd, kw_buf_head(&out), kw_buf_unread(&out), MSG_NOSIGNAL | MSG_DONTWAIT) ==
		    (ssize_t)kw_buf_unread(&out))
			sent += 64;
		kw_loop_run_once(loop, 1);
		size_t now = kwd_conn_buffer_bytes(c);
		if (now > peak)
			peak = now;
		CHECK_EQ(st->metrics.buffer_bytes, kwd_conn_buffer_bytes(c));
	}
	kw_buf_cleanup(&out);
	CHECK(peak >= 512 * 1024);

	/* Read every answer. */
	struct kw_buf in = KW_BUF_INIT;
	struct kw_header h;
	struct kw_msg m;
	unsigned got = 0;
	while (got < sent && read_frame(loop, fd, &in, &h, &m) == 0) {
		next_frame(&in, &h);
		got++;
	}
	CHECK_EQ(got, sent);
	for (int turn = 0; turn < 5; turn++)
		kw_loop_run_once(loop, 1);
	size_t after = kwd_conn_buffer_bytes(c);
	CHECK(after <= 4 * 32 * 1024);
	if (after > 4 * 32 * 1024)
		fprintf(stderr, "buffers: %zu bytes at the peak, %zu after the burst\n", peak,
		        after);
	CHECK_EQ(st->metrics.buffer_bytes, after); /* the gauge follows */
	CHECK_EQ(st->closed, 0);

	close(fd);
	for (int turn = 0; turn < TURNS && st->closed == 0; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(st->closed, 1);
	CHECK_EQ(st->metrics.buffer_bytes, 0);
	kw_loop_run_once(loop, 0); /* the deferred free */
	kw_buf_cleanup(&in);
}

/* recv_count reads what fd holds without blocking and returns the whole padded frames seen. */
static unsigned recv_count(int fd, struct kw_buf *in)
{
	for (;;) {
		if (kw_buf_reserve(in, 65536) < 0)
			break;
		ssize_t n = recv(fd, kw_buf_tail(in), in->cap - in->len, MSG_DONTWAIT);
		if (n <= 0)
			break;
		in->len += (size_t)n;
	}
	return (unsigned)(kw_buf_unread(in) / KW_PADDED_LEN);
}

/*
 * A connection pipelining slow requests yields after its slice of execution
 * time (issue 12, item 5): when a ping on another connection has been
 * answered, the 64 P-384 signs (several ms in all, under the 256-request
 * count) are not all answered yet; then every one comes back, in order.
 */
static void test_time_slice(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *a = NULL, *b = NULL;
	int fa = open_pair(st, &a), fb = open_pair(st, &b);
	uint8_t hash[48] = {7};
	struct kw_msg sign = {
	    .has_opcode = true, .opcode = KW_OP_ECDSA_SIGN_SHA384, .has_ski = true};
	memcpy(sign.ski, slow_ski, KW_SKI_LEN);
	sign.payload.data = hash;
	sign.payload.len = sizeof(hash);
	struct kw_buf out = KW_BUF_INIT;
	for (uint32_t id = 1; id <= 64; id++)
		CHECK_EQ(kw_msg_encode(&out, id, &sign, true), 0);
	send_bytes(fa, kw_buf_head(&out), kw_buf_unread(&out));
	kw_buf_cleanup(&out);
	struct kw_msg req = ping("quick");
	send_msg(fb, 99, &req);

	struct kw_buf ina = KW_BUF_INIT, inb = KW_BUF_INIT;
	int turn = 0;
	for (; turn < TURNS && recv_count(fb, &inb) < 1; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(recv_count(fb, &inb), 1);
	unsigned early = recv_count(fa, &ina);
	CHECK(early < 64);
	if (early >= 64)
		fprintf(stderr, "all 64 slow requests answered before the ping\n");

	for (; turn < TURNS && recv_count(fa, &ina) < 64; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(recv_count(fa, &ina), 64);
	for (uint32_t id = 1; id <= 64 && kw_buf_unread(&ina) >= KW_PADDED_LEN; id++) {
		struct kw_header h;
		struct kw_msg m;
		CHECK_EQ(kw_header_parse(&h, kw_buf_head(&ina), kw_buf_unread(&ina)), 0);
		CHECK_EQ(kw_msg_parse(&m, kw_buf_head(&ina) + KW_HEADER_LEN, h.length), 0);
		CHECK_EQ(h.id, id);
		CHECK_EQ(m.opcode, KW_OP_RESPONSE);
		kw_buf_consume(&ina, (size_t)KW_HEADER_LEN + h.length);
	}
	CHECK_EQ(st->metrics.requests[KW_OP_ECDSA_SIGN_SHA384], 64);

	close(fa);
	close(fb);
	for (turn = 0; turn < TURNS && st->closed < 2; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(st->closed, 2);
	kw_loop_run_once(loop, 0); /* the deferred frees */
	kw_buf_cleanup(&ina);
	kw_buf_cleanup(&inb);
}

static void test_malformed(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	/* An opcode item claiming 5 bytes in a 3-byte body. */
	const uint8_t bad[] = {KW_PROTO_MAJOR, 0x00, 0x00,          0x03, 0x00, 0x00,
	                       0x00,           0x01, KW_TAG_OPCODE, 0x00, 0x05};
	send_bytes(fd, bad, sizeof(bad));
	CHECK(wait_eof(loop, fd));
	CHECK_EQ(st->closed, 1);
	CHECK_EQ(st->metrics.requests[KW_OP_PING], 0);
	close(fd);
	kw_loop_run_once(loop, 0);
}

/* Drain answers what the peer already sent, then closes by itself. */
static void test_drain(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	struct kw_buf in = KW_BUF_INIT;
	struct kw_header h;
	struct kw_msg m, req = ping("last");

	send_msg(fd, 42, &req);
	kwd_conn_drain(c);
	CHECK_EQ(read_frame(loop, fd, &in, &h, &m), 0);
	CHECK(h.id == 42 && m.opcode == KW_OP_PONG);
	next_frame(&in, &h);
	CHECK(wait_eof(loop, fd));
	CHECK_EQ(st->closed, 1);
	CHECK_EQ(st->metrics.requests[KW_OP_PING], 1);
	close(fd);
	kw_loop_run_once(loop, 0);
	kw_buf_cleanup(&in);
}

static void test_abort(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	kwd_conn_abort(c);
	CHECK_EQ(st->closed, 1); /* at once */
	CHECK(wait_eof(loop, fd));
	CHECK_EQ(st->closed, 1);
	close(fd);
}

static void test_idle_timeout(struct kw_loop *loop, struct stub *st)
{
	struct kwd_conn *c = NULL;
	st->env.idle_ns = 50000000; /* 50 ms */
	uint64_t t0 = kw_now_ns();
	int fd = open_pair(st, &c);
	CHECK(wait_eof(loop, fd));
	CHECK_EQ(st->closed, 1);
	CHECK(kw_now_ns() - t0 >= 50000000);
	close(fd);
	kw_loop_run_once(loop, 0);
}

/* ---- a device and a batcher of this test's making (executor.h) ---- */

/* A device thread that answers "dev" to each job after a millisecond. */
struct fake_device {
	struct kwd_device dev;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct kwd_job *head, *tail; /* queued, through device_data */
	bool stop;
	unsigned done;
};

static int fake_submit(struct kwd_device *d, struct kwd_job *job)
{
	struct fake_device *f = (struct fake_device *)d;
	pthread_mutex_lock(&f->mu);
	job->device_data = NULL;
	if (f->tail != NULL)
		f->tail->device_data = job;
	else
		f->head = job;
	f->tail = job;
	pthread_cond_signal(&f->cv);
	pthread_mutex_unlock(&f->mu);
	return 0;
}

static void *fake_thread(void *arg)
{
	struct fake_device *f = arg;
	pthread_mutex_lock(&f->mu);
	for (;;) {
		while (f->head == NULL && !f->stop)
			pthread_cond_wait(&f->cv, &f->mu);
		if (f->head == NULL)
			break;
		struct kwd_job *job = f->head;
		f->head = job->device_data;
		if (f->head == NULL)
			f->tail = NULL;
		pthread_mutex_unlock(&f->mu);
		struct timespec ts = {0, 1000000};
		nanosleep(&ts, NULL);
		memcpy(job->res.buf, "dev", 3);
		kwd_exec_result_output(&job->res, 3);
		job->exec_ns = 1000000;
		/* Counted before it is handed back: once the executor has it, the
		 * test may look at done. */
		pthread_mutex_lock(&f->mu);
		f->done++;
		pthread_mutex_unlock(&f->mu);
		kwd_job_finish(job);
		pthread_mutex_lock(&f->mu);
	}
	pthread_mutex_unlock(&f->mu);
	return NULL;
}

/* A batcher taking the P-256 key's operations, answering "bat", recording its runs. */
struct fake_batcher {
	struct kwd_batcher b;
	unsigned runs, jobs, largest;
};

static bool fake_takes(struct kwd_batcher *b, const struct kwd_exec_op *op)
{
	return memcmp(op->key->ski, key_ski, KW_SKI_LEN) == 0;
}

static void fake_run(struct kwd_batcher *b, struct kwd_job **jobs, size_t n)
{
	struct fake_batcher *f = (struct fake_batcher *)b;
	f->runs++;
	f->jobs += (unsigned)n;
	if (n > f->largest)
		f->largest = (unsigned)n;
	for (size_t i = 0; i < n; i++) {
		memcpy(jobs[i]->res.buf, "bat", 3);
		kwd_exec_result_output(&jobs[i]->res, 3);
	}
}

static struct kw_msg sign_with(const uint8_t *ski, uint8_t opcode, const uint8_t *hash, size_t len)
{
	struct kw_msg m = {.has_opcode = true, .opcode = opcode, .has_ski = true};
	memcpy(m.ski, ski, KW_SKI_LEN);
	m.payload.data = hash;
	m.payload.len = len;
	return m;
}

/*
 * Requests for a device key are answered when the device hands them back,
 * out of order with the rest: a ping sent after 20 device requests comes
 * back first, and every answer carries its own request ID.
 */
static void test_device_out_of_order(struct kw_loop *loop, struct stub *st, struct fake_device *f)
{
	struct kwd_conn *c = NULL;
	int fd = open_pair(st, &c);
	uint8_t hash[48] = {3};
	struct kw_msg sign = sign_with(slow_ski, KW_OP_ECDSA_SIGN_SHA384, hash, sizeof(hash));
	for (uint32_t id = 1; id <= 20; id++)
		send_msg(fd, id, &sign);
	struct kw_msg req = ping("meanwhile");
	send_msg(fd, 99, &req);

	struct kw_buf in = KW_BUF_INIT;
	bool seen[21] = {false};
	unsigned answers = 0, device_answers_before_pong = 0;
	bool pong = false;
	struct kw_header h;
	struct kw_msg m;
	while (answers < 21 && read_frame(loop, fd, &in, &h, &m) == 0) {
		answers++;
		if (h.id == 99) {
			CHECK_EQ(m.opcode, KW_OP_PONG);
			pong = true;
		} else if (h.id >= 1 && h.id <= 20 && !seen[h.id]) {
			seen[h.id] = true;
			CHECK_EQ(m.opcode, KW_OP_RESPONSE);
			CHECK(m.payload.len == 3 && memcmp(m.payload.data, "dev", 3) == 0);
			if (!pong)
				device_answers_before_pong++;
		} else {
			CHECK(!"an answer with an unknown or repeated ID");
		}
		next_frame(&in, &h);
	}
	CHECK_EQ(answers, 21);
	CHECK(pong);
	CHECK(device_answers_before_pong < 20);

	/* Closing with requests still on the device drops their answers. */
	for (uint32_t id = 1; id <= 20; id++)
		send_msg(fd, id, &sign);
	for (int turn = 0; turn < 20; turn++)
		kw_loop_run_once(loop, 1);
	close(fd);
	for (int turn = 0; turn < TURNS && st->closed < 1; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(st->closed, 1);
	for (int turn = 0; turn < TURNS; turn++) {
		struct kwd_executor_stats es;
		kwd_executor_stats(st->env.executor, &es);
		if (es.pending == 0)
			break;
		kw_loop_run_once(loop, 10);
	}
	struct kwd_executor_stats es;
	kwd_executor_stats(st->env.executor, &es);
	CHECK_EQ(es.pending, 0);
	CHECK_EQ(es.device_ops, 40);
	pthread_mutex_lock(&f->mu);
	CHECK_EQ(f->done, 40);
	pthread_mutex_unlock(&f->mu);
	kw_buf_cleanup(&in);
}

/* Batched requests of two connections read in one loop turn run as one batch. */
static void test_batch_across_connections(struct kw_loop *loop, struct stub *st,
                                          struct fake_batcher *fb)
{
	struct kwd_conn *a = NULL, *b = NULL;
	int fa = open_pair(st, &a), fbd = open_pair(st, &b);
	uint8_t hash[32] = {5};
	struct kw_msg sign = sign_with(key_ski, KW_OP_ECDSA_SIGN_SHA256, hash, sizeof(hash));
	for (uint32_t id = 1; id <= 3; id++) {
		send_msg(fa, id, &sign);
		send_msg(fbd, 10 + id, &sign);
	}
	int fds[2] = {fa, fbd};
	for (int i = 0; i < 2; i++) {
		struct kw_buf in = KW_BUF_INIT;
		struct kw_header h;
		struct kw_msg m;
		for (uint32_t k = 1; k <= 3; k++) {
			CHECK_EQ(read_frame(loop, fds[i], &in, &h, &m), 0);
			CHECK_EQ(h.id, (uint32_t)(i * 10) + k);
			CHECK(m.payload.len == 3 && memcmp(m.payload.data, "bat", 3) == 0);
			next_frame(&in, &h);
		}
		kw_buf_cleanup(&in);
	}
	CHECK_EQ(fb->jobs, 6);
	CHECK(fb->largest >= 4); /* more than one connection's three */
	close(fa);
	close(fbd);
	for (int turn = 0; turn < TURNS && st->closed < 2; turn++)
		kw_loop_run_once(loop, 10);
	CHECK_EQ(st->closed, 2);
	kw_loop_run_once(loop, 0);
}

int main(void)
{
	struct kw_loop *loop = NULL;
	struct kwd_keystore *ks = NULL;
	struct kwd_gen *gen = NULL;
	struct kwd_executor *ex = NULL;
	struct stub st;
	char err[512];
	char *dir = make_tmpdir();
	EVP_PKEY *key = gen_ec("P-256"), *slow = gen_ec("P-384");

	CHECK(dir != NULL && key != NULL && slow != NULL);
	CHECK(kw_key_ski(key, key_ski) == 0);
	CHECK(kw_key_ski(slow, slow_ski) == 0);
	CHECK(write_key(join(dir, "p256.key"), key, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(write_key(join(dir, "p384.key"), slow, FMT_PKCS8_PEM, 0600) == 0);
	CHECK(kwd_keystore_load(dir, NULL, &ks, err, sizeof(err)) == 0);
	CHECK(ks != NULL && kwd_gen_new(&gen, 1, ks, NULL) == 0);
	CHECK(kw_loop_new(&loop) == 0);
	CHECK(loop != NULL && kwd_executor_new(&ex, loop) == 0);
	if (gen == NULL || ex == NULL)
		CHECK_DONE();
	kwd_executor_use(ex, gen);

	stub_init(&st, loop, ex);
	test_ping_and_pipeline(loop, &st);
	stub_init(&st, loop, ex);
	test_burst_released(loop, &st);
	stub_init(&st, loop, ex);
	test_time_slice(loop, &st);
	stub_init(&st, loop, ex);
	test_malformed(loop, &st);
	stub_init(&st, loop, ex);
	test_drain(loop, &st);
	stub_init(&st, loop, ex);
	test_abort(loop, &st);
	stub_init(&st, loop, ex);
	test_idle_timeout(loop, &st);

	/* The P-384 key becomes a device key (a test may write its own keystore). */
	struct fake_device dev = {.dev = {.submit = fake_submit}};
	pthread_mutex_init(&dev.mu, NULL);
	pthread_cond_init(&dev.cv, NULL);
	CHECK(pthread_create(&dev.thread, NULL, fake_thread, &dev) == 0);
	struct kwd_key *dk = (struct kwd_key *)kwd_keystore_find_ski(ks, slow_ski);
	dk->device = &dev.dev;
	stub_init(&st, loop, ex);
	test_device_out_of_order(loop, &st, &dev);
	dk->device = NULL;

	struct fake_batcher fb = {.b = {.takes = fake_takes, .run = fake_run}};
	kwd_executor_set_batcher(ex, &fb.b);
	stub_init(&st, loop, ex);
	test_batch_across_connections(loop, &st, &fb);
	kwd_executor_set_batcher(ex, NULL);

	kwd_executor_free(ex);
	pthread_mutex_lock(&dev.mu);
	dev.stop = true;
	pthread_cond_signal(&dev.cv);
	pthread_mutex_unlock(&dev.mu);
	pthread_join(dev.thread, NULL);
	kw_loop_free(loop);
	kwd_gen_unref(gen);
	EVP_PKEY_free(key);
	EVP_PKEY_free(slow);
	rm_tree(dir);
	CHECK(ERR_peek_error() == 0);
	CHECK_DONE();
}
