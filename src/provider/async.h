/*
 * async.h - how the provider runs one private-key operation: QTLS's four
 * stages inside OpenSSL's ASYNC_JOB, or a blocking wait outside one.
 *
 * An operation is a struct kwp_op: a kw_op (keyway/offload.h) on the heap
 * with the provider's notification state. It runs on one of three paths:
 *
 *  - internal polling: handed to the provider's I/O thread (io.h);
 *    at most max_inflight per process, the rest wait in a capacity queue
 *    (cap.h);
 *  - external polling: submitted to the backend the calling thread bound
 *    (kw_backend_bind_thread), completed by the application's own loop;
 *    a backend that says -EAGAIN puts the caller in that thread's
 *    capacity queue;
 *  - a wrapped local key with no backend bound: computed on the spot.
 *
 * Inside a job the caller pauses (ASYNC_pause_job) until the completion
 * notifies it -- calling the wait context's callback (callback mode), or
 * writing the wait context's eventfd (fd mode) -- and pauses again on a
 * resume that came first (a spurious one). A full channel pauses it with
 * ASYNC_STATUS_EAGAIN in the capacity queue; the completion that frees a
 * slot notifies the first waiter the same way. Outside a job the caller
 * blocks on a condition variable, bounded by the op's deadline.
 *
 * Teardown: the wait context's cleanup (run when the SSL is freed, even
 * with its job paused) takes the caller out of a capacity queue, detaches
 * the op (kw_op_detach: no notification after it returns), drops the job's
 * reference and only then closes the eventfd, so nothing writes to a
 * closed -- possibly reused -- descriptor and no callback runs for an SSL
 * that is gone. OpenSSL 3.0 runs cleanups only for fd entries, so callback
 * mode registers an entry too, with OSSL_BAD_ASYNC_FD (no descriptor).
 */
#ifndef KEYWAY_PROVIDER_ASYNC_H
#define KEYWAY_PROVIDER_ASYNC_H

#include <stddef.h>
#include <stdint.h>

struct kwp_prov;
struct kwp_key;
struct kwp_op;

/*
 * kwp_key_op runs opcode on key with input in (copied). On success returns
 * 0 with *res the completed op: read (*res)->... through kwp_op_out, then
 * kwp_op_unref it. On failure the reason is on the error queue and a
 * negative code is returned.
 */
int kwp_key_op(struct kwp_prov *prov, const struct kwp_key *key, uint8_t opcode, const uint8_t *in,
               size_t in_len, struct kwp_op **res);

/*
 * kwp_key_op_ex is kwp_key_op that also stores, when the keyserver answered
 * an error (-KW_EREMOTE), its protocol error code in *remote_error (else
 * KW_ERR_NONE): the TLS premaster path treats KW_ERR_CRYPTO, the C
 * keyserver's answer to bad padding, like any other bad padding.
 */
int kwp_key_op_ex(struct kwp_prov *prov, const struct kwp_key *key, uint8_t opcode,
                  const uint8_t *in, size_t in_len, struct kwp_op **res, uint8_t *remote_error);

/* kwp_op_out points at a completed op's result. */
const uint8_t *kwp_op_out(const struct kwp_op *p, size_t *len);

/* kwp_op_unref drops the caller's reference (the result is wiped with the op). NULL ok. */
void kwp_op_unref(struct kwp_op *p);

#endif
