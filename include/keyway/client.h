/*
 * keyway/client.h - the pipelined keyless client: one connection to one
 * keyserver, non-blocking, driven by a kw_loop.
 *
 * Requests get sequential IDs and may be answered in any order; each has a
 * deadline. Requests submitted during a loop turn are written together by a
 * before-sleep hook (many per write). The connection (TCP + mutual TLS, or a
 * Unix socket without TLS) is opened lazily on first submit and re-opened
 * on the next submit after a failure.
 *
 * Callback contract (as libuv): if kw_client_submit fails, the callback is
 * never called; if it succeeds, the callback is called exactly once, from
 * the loop's thread, never from inside kw_client_submit or kw_client_flush.
 * Connection failures (even a connect(2) that fails at once) are reported
 * through the callbacks of the requests they affect, not by submit.
 * A callback may call kw_client_submit, kw_client_flush and kw_client_free
 * on its own client; memory is released at the end of the loop turn.
 *
 * TLS writes go through write(2): the program must ignore SIGPIPE.
 */
#ifndef KEYWAY_CLIENT_H
#define KEYWAY_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "keyway/loop.h"
#include "keyway/net.h"
#include "keyway/protocol.h"

struct kw_client;

struct kw_client_config {
	struct kw_addr addr;         /* keyserver address (TCP or unix) */
	SSL_CTX *ssl_ctx;            /* client context (ref taken); NULL only for unix addresses */
	const char *server_name;     /* SNI and certificate name to verify; NULL: addr.host */
	unsigned timeout_ms;         /* per-request deadline; 0 means 10000 (as gokeyless) */
	unsigned max_inflight;       /* submits beyond this get -EAGAIN; 0 means 1000 */
	unsigned connect_timeout_ms; /* TCP + TLS handshake; 0 means timeout_ms */
};

/*
 * The result of one request. status is 0 when the server answered
 * KW_OP_RESPONSE or KW_OP_PONG (payload valid for the duration of the
 * callback), -KW_EREMOTE when it answered KW_OP_ERROR (remote_error holds
 * the code), -KW_ETIMEOUT at the deadline, -KW_ECLOSED/-KW_ETLS/-errno when
 * the connection failed, -KW_EPROTO on a malformed or mismatched response,
 * -KW_ECANCELED when the client is freed.
 */
struct kw_client_result {
	int status;
	uint8_t opcode;       /* response opcode (KW_OP_RESPONSE, KW_OP_PONG, KW_OP_ERROR) */
	uint8_t remote_error; /* enum kw_proto_error when status == -KW_EREMOTE */
	const uint8_t *payload;
	size_t payload_len;
	uint64_t latency_ns; /* submit to completion */
};

typedef void (*kw_client_cb)(void *arg, const struct kw_client_result *res);

/* kw_client_new creates a client on loop; 0 or -errno. Nothing connects yet. */
int kw_client_new(struct kw_loop *loop, const struct kw_client_config *cfg, struct kw_client **out);

/*
 * kw_client_forget_fd is for a forked child that inherited c from a thread
 * that does not exist there: it closes the connection's descriptor with
 * close(2) only and forgets its SSL without SSL_shutdown or SSL_free, so
 * nothing is written on a TLS stream the parent still uses (and no lock the
 * parent's thread may have held at fork is taken). c must not be used or
 * freed afterwards (it is leaked deliberately). NULL ok.
 */
void kw_client_forget_fd(struct kw_client *c);

/*
 * kw_client_free fails every pending request with -KW_ECANCELED (callbacks
 * run before it returns; a kw_client_submit from them fails with
 * -KW_ECANCELED), closes the connection and frees the client at the end of
 * the current loop turn (or in kw_loop_free). NULL ok. c must not be used
 * after this returns.
 */
void kw_client_free(struct kw_client *c);

/*
 * kw_client_submit queues req (encoded at once; req and its byte strings may
 * be freed when this returns) and returns 0, -EAGAIN when max_inflight
 * requests are pending, -EMSGSIZE/-ENOMEM, -EINVAL if cb is NULL. The
 * request ID is assigned here and written to *id_out when non-NULL. An
 * answer must carry KW_OP_PONG for a ping and KW_OP_RESPONSE otherwise
 * (or KW_OP_ERROR with a 1-byte code); anything else is -KW_EPROTO.
 */
int kw_client_submit(struct kw_client *c, const struct kw_msg *req, kw_client_cb cb, void *arg,
                     uint32_t *id_out);

/* kw_client_inflight is the number of requests submitted and not yet completed. */
unsigned kw_client_inflight(const struct kw_client *c);

/* kw_client_connected is true when the transport (and TLS) is established. */
int kw_client_connected(const struct kw_client *c);

/* kw_client_flush writes queued requests now instead of at the end of the loop turn. */
void kw_client_flush(struct kw_client *c);

#endif
