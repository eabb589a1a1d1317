/*
 * io.h - the provider's I/O thread (internal polling): one per process,
 * owning a kw_loop and a keyless backend (keyway/backend_keyless.h) with
 * `connections` kw_clients per keyserver.
 *
 * Application threads hand accepted kw_ops over through a mutex-protected
 * queue and wake the loop; the thread submits them to the backend, whose
 * completions run the ops' done callbacks on the thread. How many ops may
 * be in flight, and who waits for a slot, is the caller's business (the
 * capacity queue, cap.h): the thread itself never refuses an op.
 *
 * The thread starts on the first submit, in the process that submits.
 * After fork() the child must not touch its parent's I/O thread: it
 * abandons it (kwp_io_abandon) and makes a new one.
 */
#ifndef KEYWAY_PROVIDER_IO_H
#define KEYWAY_PROVIDER_IO_H

#include <sys/types.h>

#include <openssl/types.h>

#include "keyway/backend_keyless.h"
#include "keyway/offload.h"
#include "settings.h"

struct kwp_io;

/*
 * kwp_io_new prepares an I/O thread for the keyservers of s (which must
 * outlive it); libctx is used for the TLS context (NULL: default); the
 * backend adds its retries and failovers to counters (may be NULL). No
 * thread and no connection yet. 0 or -errno.
 */
int kwp_io_new(const struct kwp_settings *s, OSSL_LIB_CTX *libctx,
               struct kw_keyless_counters *counters, struct kwp_io **out);

/*
 * kwp_io_submit accepts op (kw_op_accept: it is in flight from now on and
 * completes exactly once, on the I/O thread) and hands it to the thread,
 * started here on first use. 0, or -errno when the thread cannot start
 * (the op is then untouched).
 */
int kwp_io_submit(struct kwp_io *io, struct kw_op *op);

/*
 * kwp_io_submit_to is kwp_io_submit pinned to keyserver `server`, without
 * failover (keyway ping).
 */
int kwp_io_submit_to(struct kwp_io *io, struct kw_op *op, int server);

/* kwp_io_setup_error is why the thread could not set up (ops fail with -KW_ECONFIG), or NULL. */
const char *kwp_io_setup_error(struct kwp_io *io);

/* kwp_io_pid is the process the I/O thread belongs to. */
pid_t kwp_io_pid(const struct kwp_io *io);

/*
 * kwp_io_stop stops and joins the thread (ops in flight or queued complete
 * with -KW_ECANCELED; later submits are refused with it) and keeps io.
 * Idempotent. Only in the process that made io.
 */
void kwp_io_stop(struct kwp_io *io);

/*
 * kwp_io_free stops the thread (ops in flight or queued complete with
 * -KW_ECANCELED before it returns), closes the connections and frees io.
 * Only in the process that made io. NULL ok.
 */
void kwp_io_free(struct kwp_io *io);

/*
 * kwp_io_abandon is for a forked child: io's thread does not exist there
 * and its connections belong to the parent. Its descriptors (epoll,
 * eventfd, keyserver sockets) are closed with close(2) only: no
 * SSL_shutdown, nothing written to the parent's streams. Its memory is not
 * reclaimed. Idempotent.
 */
void kwp_io_abandon(struct kwp_io *io);

/* kwp_io_deadline_ms is CLOCK_MONOTONIC now + ms, in nanoseconds: an op's deadline_ns. */
uint64_t kwp_io_deadline_ms(unsigned ms);

#endif
