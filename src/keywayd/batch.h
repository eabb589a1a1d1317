/*
 * batch.h - the batch kind of keywayd's executor for RSA: the requests for
 * file keys the multi-buffer kernel takes (kwd_key.bk) that a loop turn read,
 * across connections, computed in batches of up to KW_RSA_BATCH_MAX with
 * kw_rsa_batch_run before the loop sleeps (keyway/rsa_batch.h). Padding
 * (PKCS#1 v1.5, PSS) is OpenSSL's through kw_rsa_batch_pad; raw decryption
 * exponentiates the ciphertext as it is. A batch too small to beat OpenSSL
 * (kw_rsa_batch_min_lanes) is computed by OpenSSL request by request.
 */
#ifndef KEYWAYD_BATCH_H
#define KEYWAYD_BATCH_H

#include "executor.h"
#include "metrics.h"

struct kwd_rsa_batcher;

/*
 * kwd_rsa_batcher_new makes a worker's batcher (its counters go to m, owner
 * thread). 0 or -ENOMEM.
 */
int kwd_rsa_batcher_new(struct kwd_rsa_batcher **out, struct kwd_wmetrics *m);
void kwd_rsa_batcher_free(struct kwd_rsa_batcher *b);
/* kwd_rsa_batcher_base is what kwd_executor_set_batcher takes. */
struct kwd_batcher *kwd_rsa_batcher_base(struct kwd_rsa_batcher *b);

/* kwd_rsa_batch_takes: whether op goes to batches (an RSA sign or raw decryption, a bk). */
bool kwd_rsa_batch_takes(const struct kwd_exec_op *op);

#endif
