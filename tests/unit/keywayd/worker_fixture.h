/*
 * worker_fixture.h - what the keywayd worker tests set a worker among: a
 * Unix listener and blocking clients of it, a key generation made from one
 * key written to a scratch directory, and clients that fill their socket or
 * read until the worker closes it.
 */
#ifndef KEYWAY_TEST_WORKER_FIXTURE_H
#define KEYWAY_TEST_WORKER_FIXTURE_H

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"
#include "gen.h"
#include "keygen.h"
#include "keystore.h"
#include "keyway/buf.h"
#include "keyway/protocol.h"

/* listen_unix listens (non-blocking) on dir/sock; *sa is its address. */
static inline int listen_unix(const char *dir, struct sockaddr_un *sa)
{
	*sa = (struct sockaddr_un){.sun_family = AF_UNIX};
	snprintf(sa->sun_path, sizeof(sa->sun_path), "%s", join(dir, "sock"));
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)sa, sizeof(*sa)), 0);
	CHECK_EQ(listen(fd, 64), 0);
	return fd;
}

/* client makes a blocking Unix socket whose reads give up after 3 s (not connected yet). */
static inline int client(void)
{
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = {.tv_sec = 3};
	CHECK(fd >= 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	return fd;
}

/* dial connects a client to sa. */
static inline int dial(const struct sockaddr_un *sa)
{
	int fd = client();
	CHECK_EQ(connect(fd, (const struct sockaddr *)sa, sizeof(*sa)), 0);
	return fd;
}

/* reads_eof reads until the peer closes; true if it did (not a read timeout). */
static inline bool reads_eof(int fd)
{
	char buf[4096];
	ssize_t n;
	while ((n = recv(fd, buf, sizeof(buf), 0)) > 0)
		;
	return n == 0 || (n < 0 && errno == ECONNRESET);
}

/* gen_with makes generation seq of key alone, written to dir/sub/k.key. */
static inline struct kwd_gen *gen_with(const char *dir, uint64_t seq, EVP_PKEY *key,
                                       const char *sub)
{
	struct kwd_keystore *ks = NULL;
	struct kwd_gen *g = NULL;
	char err[512];
	CHECK_EQ(mkdir(join(dir, sub), 0700), 0);
	CHECK_EQ(write_key(join(join(dir, sub), "k.key"), key, FMT_PKCS8_PEM, 0600), 0);
	CHECK_EQ(kwd_keystore_load(join(dir, sub), NULL, &ks, err, sizeof(err)), 0);
	CHECK_EQ(kwd_gen_new(&g, seq, ks, NULL), 0);
	return g;
}

/*
 * fill_with_pings sends pings and reads no answer, in rounds until the
 * socket is full while the worker answers into it; how many it sent. The
 * worker is then left with output it cannot write.
 */
static inline int fill_with_pings(int fd)
{
	struct kw_msg ping = {.has_opcode = true, .opcode = KW_OP_PING};
	struct kw_buf b = KW_BUF_INIT;
	int sent = 0;
	CHECK_EQ(kw_msg_encode(&b, 1, &ping, true), 0);
	for (int round = 0; round < 5; round++) {
		while (sent < 20000 && send(fd, kw_buf_head(&b), kw_buf_unread(&b),
		                            MSG_NOSIGNAL | MSG_DONTWAIT) > 0)
			sent++;
		usleep(50000);
	}
	kw_buf_cleanup(&b);
	return sent;
}

#endif
