/*
 * keyless_fixture.h - what the keyless backend and client unit tests share:
 * a scripted keyserver on a unix socket served by a thread of its own (its
 * frames go to the test's poll_server handler), the loop-driving helpers,
 * unix: addresses, and (from pki.h) PEM files written for a test's PKI.
 */
#ifndef KW_TEST_KEYLESS_FIXTURE_H
#define KW_TEST_KEYLESS_FIXTURE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "check.h"
#include "pki.h"
#include "poll_server.h"
#include "keyway/backend_keyless.h"
#include "keyway/loop.h"
#include "keyway/net.h"

/*
 * A keyserver thread: every complete frame goes to handle(arg, ...). While
 * hold(arg) (optional) returns true it reads and answers nothing, like a
 * stopped process whose connections stay open.
 */
struct fake_keyserver {
	char path[108];
	int lfd;
	atomic_bool stop;
	pthread_t th;
	poll_server_handler handle;
	bool (*hold)(void *arg);
	void *arg;
};

static inline void *fake_keyserver_main(void *p)
{
	struct fake_keyserver *ks = p;
	struct poll_server ps;

	poll_server_init(&ps, ks->lfd);
	while (!atomic_load(&ks->stop)) {
		if (ks->hold != NULL && ks->hold(ks->arg)) {
			usleep(5000);
			continue;
		}
		poll_server_step(&ps, 20, ks->handle, ks->arg);
	}
	poll_server_close(&ps);
	return NULL;
}

/* Listens on /tmp/kw-TAG-PID-WHICH.sock and starts the thread; exits the test on failure. */
static inline void fake_keyserver_start(struct fake_keyserver *ks, const char *tag, int which,
                                        poll_server_handler handle, bool (*hold)(void *arg),
                                        void *arg)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memset(ks, 0, sizeof(*ks));
	snprintf(ks->path, sizeof(ks->path), "/tmp/kw-%s-%d-%d.sock", tag, (int)getpid(), which);
	unlink(ks->path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", ks->path);
	ks->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
	if (ks->lfd < 0 || bind(ks->lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
	    listen(ks->lfd, 16) < 0) {
		perror("scripted server");
		exit(1);
	}
	ks->handle = handle;
	ks->hold = hold;
	ks->arg = arg;
	pthread_create(&ks->th, NULL, fake_keyserver_main, ks);
}

static inline void fake_keyserver_stop(struct fake_keyserver *ks)
{
	atomic_store(&ks->stop, true);
	pthread_join(ks->th, NULL);
	close(ks->lfd);
	unlink(ks->path);
}

/* A keyless backend on loop with cfg and two connections a keyserver; NULL (and a
 * failed check) if it cannot be made. */
static inline struct kw_backend *fixture_keyless_new(struct kw_loop *loop,
                                                     struct kw_keyless_config cfg)
{
	struct kw_backend *b = NULL;
	cfg.connections = 2;
	CHECK_EQ(kw_backend_keyless_new(loop, &cfg, &b), 0);
	return b;
}

/* Sets *a to unix:PATH; exits the test if it does not parse. */
static inline void fixture_unix_addr(struct kw_addr *a, const char *path)
{
	char text[140], err[128];
	snprintf(text, sizeof(text), "unix:%s", path);
	if (kw_addr_parse(a, text, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
}

/* Runs loop for ms milliseconds. */
static inline void fixture_run_ms(struct kw_loop *loop, unsigned ms)
{
	uint64_t end = kw_now_ns() + (uint64_t)ms * 1000000u;
	while (kw_now_ns() < end)
		kw_loop_run_once(loop, 10);
}

/*
 * Runs loop until ops[0] .. ops[n - 1] (pointers to structs holding a
 * struct kw_op named op) are all done, or ms milliseconds have passed.
 */
#define FIXTURE_RUN_UNTIL_DONE(loop, ops, n, ms)                                                   \
	do {                                                                                       \
		uint64_t fx_end_ = kw_now_ns() + (uint64_t)(ms)*1000000u;                          \
		while (kw_now_ns() < fx_end_) {                                                    \
			int fx_left_ = 0;                                                          \
			for (int fx_i_ = 0; fx_i_ < (n); fx_i_++)                                  \
				fx_left_ += !kw_op_is_done(&(ops)[fx_i_]->op);                     \
			if (fx_left_ == 0)                                                         \
				break;                                                             \
			kw_loop_run_once((loop), 10);                                              \
		}                                                                                  \
	} while (0)

#endif
