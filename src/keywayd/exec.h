/*
 * exec.h - executing keyless requests against the keys of a keystore.
 *
 * A kwd_exec belongs to one worker thread and caches initialised OpenSSL
 * contexts per (key, operation), so the hot path does no provider fetches;
 * the cache is dropped when the keystore changes.
 */
#ifndef KEYWAYD_EXEC_H
#define KEYWAYD_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "keyway/opcodes.h"
#include "keyway/protocol.h"
#include "keystore.h"

struct kwd_exec_result {
	uint8_t opcode;         /* KW_OP_RESPONSE, KW_OP_PONG or KW_OP_ERROR */
	uint8_t error;          /* enum kw_proto_error; KW_ERR_NONE on success */
	const uint8_t *payload; /* points into buf, or into the request (pong; NULL if it had
	                           no payload); for KW_OP_ERROR the one error byte */
	size_t len;
	uint8_t buf[KW_RESULT_MAX]; /* from keyway/protocol.h */
};

struct kwd_exec;

/* kwd_exec_new allocates an executor with an empty cache in *out; 0 or -ENOMEM. */
int kwd_exec_new(struct kwd_exec **out);
/* kwd_exec_free drops the cache and frees e. NULL ok. */
void kwd_exec_free(struct kwd_exec *e);
/* kwd_exec_reset drops the cached contexts (and their key references) now. */
void kwd_exec_reset(struct kwd_exec *e);

/*
 * kwd_exec_run answers one decoded request (any opcode) following the table in
 * docs/protocol.md: ping -> pong echoing the payload; key operations -> a
 * signature / raw decrypted block, or an error code. Never fails as a
 * function: every outcome is a response in *res. The result buffer is wiped
 * by the caller after it is encoded (kwd_exec_result_cleanse).
 */
void kwd_exec_run(struct kwd_exec *e, const struct kwd_keystore *ks, const struct kw_msg *req,
                  struct kwd_exec_result *res);

/* A key operation a request asks for, found and checked by kwd_exec_prepare. */
struct kwd_exec_op {
	const struct kwd_key *key;
	const struct kw_opcode_desc *desc;
	uint8_t opcode;
	struct kw_bytes in; /* the request's payload (borrowed from the request) */
};

/*
 * kwd_exec_prepare does the part of kwd_exec_run that needs no key: returns 1
 * with *res the whole answer (a pong, an error: unknown opcode or key, bad
 * input length), or 0 with *op the key operation still to compute (inline by
 * kwd_exec_key, or by a device or a batch; see executor.h).
 */
int kwd_exec_prepare(const struct kwd_keystore *ks, const struct kw_msg *req,
                     struct kwd_exec_op *op, struct kwd_exec_result *res);
/* kwd_exec_key computes op on the loop thread, with e's cached contexts. */
void kwd_exec_key(struct kwd_exec *e, const struct kwd_keystore *ks, const struct kwd_exec_op *op,
                  struct kwd_exec_result *res);

/* Results made by whoever computes an operation (inline, a device, a batch). */
void kwd_exec_result_error(struct kwd_exec_result *res, enum kw_proto_error e);
/* kwd_exec_result_output marks the first len bytes of res->buf as the answer. */
void kwd_exec_result_output(struct kwd_exec_result *res, size_t len);

/*
 * kwd_exec_find_key returns the key req names, or NULL with the error to
 * answer (docs/protocol.md §7): a valid SKI wins, else a valid digest;
 * all-zero identifiers count as absent.
 */
const struct kwd_key *kwd_exec_find_key(const struct kwd_keystore *ks, const struct kw_msg *req,
                                        enum kw_proto_error *err);

/* kwd_exec_result_cleanse wipes what res->buf holds and empties res. */
void kwd_exec_result_cleanse(struct kwd_exec_result *res);

#endif
