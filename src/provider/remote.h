/*
 * remote.h - keyless operations for the provider: an operation object
 * submitted from any application thread to one I/O thread per process,
 * which owns a kw_loop and the keyless connections (kw_client).
 *
 * An operation (struct kwp_op) is reference-counted: the submitter holds
 * one reference, the I/O thread another until it completes the op. A
 * submitter that stops waiting (its deadline passed) marks the op
 * abandoned and drops its reference; the late completion then touches
 * nothing but the op itself. Completion either signals the op's condition
 * variable (kwp_op_wait) or calls the op's done callback on the I/O thread
 * -- the hook an asynchronous caller uses.
 *
 * The I/O thread starts on the first submit, in the process that submits.
 * After fork() the child must not touch its parent's remote: it abandons
 * it (kwp_remote_abandon) and makes a new one.
 */
#ifndef KEYWAY_PROVIDER_REMOTE_H
#define KEYWAY_PROVIDER_REMOTE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <openssl/types.h>

#include "keyway/protocol.h"
#include "settings.h"

struct kwp_remote;
struct kwp_op;

/* Called once on the I/O thread when op completes (status set). Must not block. */
typedef void (*kwp_op_done_fn)(struct kwp_op *op, void *arg);

struct kwp_op {
	atomic_int refs;
	/* Request: set before submit, read-only afterwards. */
	uint8_t opcode; /* KW_OP_* */
	bool has_ski;
	uint8_t ski[KW_SKI_LEN];
	uint8_t *in; /* payload (owned, wiped on free) */
	size_t in_len;
	int server;             /* keyserver index, or -1: any, with failover */
	uint64_t deadline_ns;   /* CLOCK_MONOTONIC; the op fails with -KW_ETIMEOUT after it */
	kwp_op_done_fn done_fn; /* NULL: signal waiters instead */
	void *done_arg;

	/* Result: valid once done is set (read it under mu, or after kwp_op_wait). */
	int status;           /* 0, -KW_EREMOTE, -KW_ETIMEOUT, -KW_ECONFIG, -errno... */
	uint8_t remote_error; /* kw_proto_error when status == -KW_EREMOTE */
	uint8_t *out;         /* response payload (owned, wiped on free) */
	size_t out_len;
	int last_server;    /* the keyserver that answered or failed last (-1: none) */
	uint64_t submit_ns; /* kw_now_ns() at kwp_remote_submit */
	uint64_t done_ns;   /* kw_now_ns() at completion */
	char detail[256];   /* why, for failures that are not the keyserver's answer */

	/* I/O thread state. */
	uint32_t tried;            /* bit i: keyserver i was tried */
	int start;                 /* first keyserver to try */
	struct kwp_op *next;       /* submission queue / backlog link */
	struct kwp_remote *remote; /* set when sent, for the completion */

	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	bool abandoned; /* the submitter stopped waiting */
};

/*
 * kwp_op_new makes an op for opcode with a copy of payload (ski may be
 * NULL: ping). The caller holds the one reference. NULL when out of memory.
 */
struct kwp_op *kwp_op_new(uint8_t opcode, const uint8_t *ski, const uint8_t *payload, size_t len);
/* kwp_op_put drops a reference; the last one frees the op. NULL ok. */
void kwp_op_put(struct kwp_op *op);

/*
 * kwp_op_wait blocks until op completes or deadline_ns (CLOCK_MONOTONIC)
 * passes. Returns 0 when done, -KW_ETIMEOUT after marking the op abandoned.
 */
int kwp_op_wait(struct kwp_op *op, uint64_t deadline_ns);

/*
 * kwp_remote_new prepares a remote for the keyservers of s (which must
 * outlive it); libctx is used for the TLS context (NULL: default). No thread
 * and no connection yet. 0 or -errno.
 */
int kwp_remote_new(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, struct kwp_remote **out);

/*
 * kwp_remote_submit hands op to the I/O thread (started here on first use)
 * and takes a reference. 0, or -errno when the thread cannot start (the op
 * is then untouched).
 */
int kwp_remote_submit(struct kwp_remote *r, struct kwp_op *op);

/* kwp_remote_setup_error is why the I/O thread could not set up (ops fail with -KW_ECONFIG), or
 * NULL. */
const char *kwp_remote_setup_error(struct kwp_remote *r);

/* kwp_remote_pid is the process the remote belongs to. */
pid_t kwp_remote_pid(const struct kwp_remote *r);

/*
 * kwp_remote_free stops the I/O thread (pending ops complete with
 * -KW_ECANCELED), closes the connections and frees r. Only in the process
 * that made r. NULL ok.
 */
void kwp_remote_free(struct kwp_remote *r);

/*
 * kwp_remote_abandon is for a forked child: r's thread does not exist
 * there and its connections belong to the parent, so r is left as it is
 * (its memory and descriptors are not reclaimed).
 */
void kwp_remote_abandon(struct kwp_remote *r);

/* kwp_now_ms_deadline is CLOCK_MONOTONIC now + ms, in nanoseconds. */
uint64_t kwp_deadline_after_ms(unsigned ms);

#endif
