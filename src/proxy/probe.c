/*
 * probe.c - --offload-probe, a test aid for the asynchronous path while the
 * keyway provider does not yet offload local keys.
 *
 * libssl runs the certificate callback inside the handshake's ASYNC_JOB, so
 * a callback that offloads an op and pauses exercises everything the proxy
 * does for a real offloaded sign: TLS-ASYNC, the async queue (callback
 * mode), the wait fds (fd mode), the pollers, the threads backend, a full
 * backend, spurious resumes. It does what the provider will do with the
 * worker's bound backend (kw_backend_thread): in a job, submit and pause
 * (pausing again until the op is done; with ASYNC_STATUS_EAGAIN while the
 * backend is full); outside one (--async off), submit and block until done.
 * Each handshake pays one extra private-key operation, so never benchmark
 * with it.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/rand.h>

#include "keyway/backend.h"
#include "keyway/opcodes.h"
#include "proxy.h"

struct probe_op {
	struct kw_op op;
	uint8_t digest[32];
	bool in_submit;       /* done inside submit (inline): nothing to notify */
	ASYNC_callback_fn cb; /* callback mode */
	void *cb_arg;
	int efd; /* fd mode: the wait context's eventfd (owned by it) */
};

static const int probe_fd_key; /* our key in the ASYNC_WAIT_CTX */

static void probe_done(struct kw_op *op, void *arg)
{
	struct probe_op *p = arg;
	if (p->in_submit)
		return;
	if (p->cb != NULL) {
		p->cb(p->cb_arg);
	} else if (p->efd >= 0) {
		uint64_t one = 1;
		ssize_t w = write(p->efd, &one, sizeof(one));
		(void)w;
	}
}

static void probe_release(struct kw_op *op)
{
	free(op);
}

static void close_fd(ASYNC_WAIT_CTX *ctx, const void *key, OSSL_ASYNC_FD fd, void *custom)
{
	close(fd);
}

/* wait_fd returns the wait context's eventfd, making it on first use. */
static int wait_fd(ASYNC_WAIT_CTX *wctx)
{
	OSSL_ASYNC_FD fd = -1;
	void *custom = NULL;
	if (ASYNC_WAIT_CTX_get_fd(wctx, &probe_fd_key, &fd, &custom) == 1 && fd >= 0)
		return fd;
	fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ASYNC_WAIT_CTX_set_wait_fd(wctx, &probe_fd_key, fd, NULL, close_fd) != 1) {
		close(fd);
		return -ENOMEM;
	}
	return fd;
}

static int submit(struct kw_backend *b, struct probe_op *p)
{
	p->in_submit = true;
	int rc = kw_backend_submit(b, &p->op);
	p->in_submit = false;
	return rc;
}

/* run_blocking is naive blocking offload: the loop thread waits for the op. */
static int run_blocking(struct kw_backend *b, struct probe_op *p)
{
	int rc;
	while ((rc = submit(b, p)) == -EAGAIN)
		kw_backend_poll(b, 4096);
	if (rc < 0)
		return rc;
	while (!kw_op_is_done(&p->op)) {
		if (kw_backend_poll(b, 4096) > 0)
			continue;
		int fd = kw_backend_wake_fd(b);
		if (fd >= 0 && kw_backend_arm(b)) {
			struct pollfd pf = {.fd = fd, .events = POLLIN};
			poll(&pf, 1, 10);
			kw_backend_disarm(b);
			kw_backend_drain_wake_fd(b);
		}
	}
	return 0;
}

static int run_async(struct kw_backend *b, struct probe_op *p, ASYNC_JOB *job)
{
	ASYNC_WAIT_CTX *wctx = ASYNC_get_wait_ctx(job);
	int rc;

	if (ASYNC_WAIT_CTX_get_callback(wctx, &p->cb, &p->cb_arg) != 1) {
		p->cb = NULL;
		if ((p->efd = wait_fd(wctx)) < 0)
			return p->efd;
	}
	while ((rc = submit(b, p)) == -EAGAIN) {
		/* No notification will come for this: the application retries after a completion.
		 */
		ASYNC_WAIT_CTX_set_status(wctx, ASYNC_STATUS_EAGAIN);
		ASYNC_pause_job();
	}
	if (rc < 0)
		return rc;
	if (kw_op_is_done(&p->op))
		return 0; /* computed inline: no pause */
	ASYNC_WAIT_CTX_set_status(wctx, ASYNC_STATUS_OK);
	/* A resume before completion (a spurious one) pauses again. */
	do
		ASYNC_pause_job();
	while (!kw_op_is_done(&p->op));
	if (p->cb == NULL) {
		uint64_t v;
		ssize_t r = read(p->efd, &v, sizeof(v));
		(void)r;
	}
	return 0;
}

static int probe_cert_cb(SSL *ssl, void *arg)
{
	EVP_PKEY *key = arg;
	struct kw_backend *b = kw_backend_thread();
	struct kpx_worker *w = kpx_worker_current();
	uint8_t opcode;
	int rc;

	if (b == NULL)
		return 1;
	switch (kw_key_type_of(key)) {
	case KW_KEY_RSA:
		opcode = KW_OP_RSA_PSS_SIGN_SHA256;
		break;
	case KW_KEY_EC:
		opcode = KW_OP_ECDSA_SIGN_SHA256;
		break;
	default:
		opcode = KW_OP_ED25519_SIGN;
	}
	struct probe_op *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return 0;
	kw_op_init(&p->op, KW_OPK_ASYM, opcode);
	RAND_bytes(p->digest, sizeof(p->digest));
	p->op.pkey = key;
	p->op.in = p->digest;
	p->op.in_len = sizeof(p->digest);
	p->op.done = probe_done;
	p->op.done_arg = p;
	p->op.release = probe_release;
	p->efd = -1;
	ASYNC_JOB *job = ASYNC_get_current_job();
	rc = job != NULL ? run_async(b, p, job) : run_blocking(b, p);
	if (rc == 0)
		rc = p->op.status;
	kw_op_unref(&p->op);
	if (rc == 0 && w != NULL)
		kpx_add(&w->m.probe_ops, 1);
	return rc == 0 ? 1 : 0;
}

void kpx_probe_install(SSL_CTX *ctx, EVP_PKEY *key)
{
	SSL_CTX_set_cert_cb(ctx, probe_cert_cb, key);
}
