/*
 * keyway/provider_api.h - the keyway provider for an application that links
 * it in and runs its own event loops (external polling): keyway-proxy.
 *
 * Registration. Link the provider's static library (CMake target
 * provider_core, which brings libkeyway) and register it as a built-in
 * provider before loading it, with polling set to external:
 *
 *     kw_provider_configure("polling", "external");  // or KEYWAY_POLLING, openssl.cnf
 *     OSSL_PROVIDER_add_builtin(libctx, "keyway", kw_provider_init);
 *     OSSL_PROVIDER *kp = OSSL_PROVIDER_load(libctx, "keyway");
 *     OSSL_PROVIDER *dp = OSSL_PROVIDER_load(libctx, "default");
 *
 * The provider is then the program's own code, so the functions below are
 * plain calls into it (and it shares libkeyway's thread-local backend
 * binding with the program). A keyway.so that OpenSSL loads from disk is a
 * separate copy: these functions cannot reach it.
 *
 * Each worker thread owns its keyserver connections:
 *
 *     struct kw_backend *b;
 *     kw_provider_keyless_backend(kp, worker_loop, &b, err, sizeof(err));
 *     kw_backend_bind_thread(b);                // keyway/backend.h
 *     ASYNC_init_thread(max_jobs, prewarm);
 *
 * With polling = external, a private-key operation on a keyway key inside
 * an ASYNC_JOB on that thread is submitted to b. b's connections are
 * kw_clients on the worker's kw_loop, so the keyserver sockets to watch
 * are already in the worker's loop: requests a loop turn produced are
 * written together before the loop sleeps, answers are read on
 * readiness, and kw_loop_run_once completes the ops -- notifying each
 * paused job through its wait context's callback (SSL_CTX_set_async_
 * callback: no syscall) or eventfd. kw_backend_poll(b) has nothing to do
 * for keyless; kw_backend_inflight(b, KW_OPK_ASYM) counts what is in
 * flight (for polling heuristics and metrics). When b is full (its
 * max_inflight, the provider's setting) the job pauses with
 * ASYNC_STATUS_EAGAIN and is notified, the same way, by the completion
 * that frees a slot. An operation outside a job (blocking: --async off, key
 * checks) goes through the provider's own I/O thread instead, started on
 * first such use, since nobody would run the worker's loop meanwhile.
 *
 * Local keys: kw_provider_wrap_key turns a local private key into a keyway
 * key whose signatures and decryptions are kw_ops with op->pkey = the local
 * key, submitted to the thread's bound backend when that is a local one
 * (threads or inline, keyway/backend.h), and computed on the spot when no
 * local backend is bound. Outside a job the provider drives the bound
 * backend itself (kw_backend_poll, its wake fd) until the op completes.
 *
 * Callback mode and teardown: OpenSSL runs no cleanup for a wait context
 * without fds, so an application in callback mode must not free an SSL
 * whose job is paused; keep it until the notification and let the job
 * finish (fd mode tolerates it: the eventfd's cleanup detaches the op).
 */
#ifndef KEYWAY_PROVIDER_API_H
#define KEYWAY_PROVIDER_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/core.h>
#include <openssl/provider.h>

#include "keyway/loop.h"
#include "keyway/offload.h"

/*
 * kw_provider_configure sets the provider setting name -- an openssl.cnf key
 * of the provider's section ("servers", "client_cert", "client_key", "ca",
 * "server_name", "timeout_ms", "attempt_timeout_ms", "connections",
 * "max_inflight", "polling", "stats_file", "fallback_keys"; '-' and '_'
 * alike) -- to value, a copy of which is kept for the process. A value set
 * here overrides the KEYWAY_* variable, which overrides openssl.cnf; NULL
 * drops it again. The provider reads its settings when it is loaded: call
 * this first, from one thread. A bad value is reported as a bad variable
 * would be, naming the variable (KEYWAY_TIMEOUT_MS: ...). 0, -EINVAL for
 * an unknown name, or -ENOMEM.
 */
int kw_provider_configure(const char *name, const char *value);

/*
 * The words the provider's error data starts with when a keyserver answered
 * "key not found", followed by the key's SKI in hex: a program that gets the
 * error back (keyway-proxy's access log) finds the cause and the key by it.
 */
#define KW_PROVIDER_KEY_NOT_FOUND_TEXT "no keyserver holds the key with SKI "

/*
 * kw_provider_log_config_errors(false) stops the provider from logging a bad
 * setting when it is loaded, for an application that checks the settings
 * itself (kw_provider_keyless_backend) and reports them in its own words:
 * one line, not two. Errors are still raised on every operation. Default on.
 */
void kw_provider_log_config_errors(bool on);

/* kw_provider_init is the provider's init function, for OSSL_PROVIDER_add_builtin. */
int kw_provider_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                     const OSSL_DISPATCH **out, void **provctx);

/*
 * kw_provider_is_external tells whether prov (a loaded keyway provider) has
 * polling = external: 1, 0, or -EINVAL when prov is not this keyway.
 */
int kw_provider_is_external(OSSL_PROVIDER *prov);

/*
 * kw_provider_keyless_backend makes a keyless backend on loop (the calling
 * worker's) from prov's settings: its keyservers, TLS files, connections,
 * timeout_ms, attempt_timeout_ms, max_inflight and fallback keys. 0, or a
 * negative code with the reason in err (-EINVAL: prov is not keyway;
 * -KW_ECONFIG: bad or missing settings).
 */
int kw_provider_keyless_backend(OSSL_PROVIDER *prov, struct kw_loop *loop, struct kw_backend **out,
                                char *err, size_t errlen);

/*
 * kw_provider_wrap_key makes *out, a keyway key (in libctx, which must have
 * the built-in keyway provider loaded) wrapping the local private key
 * local (referenced; RSA, EC P-256/384/521 or Ed25519). 1 on success, 0 on
 * failure with the reason on OpenSSL's error queue.
 */
int kw_provider_wrap_key(OSSL_LIB_CTX *libctx, EVP_PKEY *local, EVP_PKEY **out);

/* The counters of KEYWAY_STATS_FILE (see docs/provider.md), for this process. */
struct kw_provider_stats {
	uint64_t ops_submitted;
	uint64_t pauses;
	uint64_t spurious_resumes;
	uint64_t eagain;
	uint64_t fd_wakeups;
	uint64_t callback_wakeups;
	uint64_t eventfds_created;
	uint64_t retries;
	uint64_t failovers;
	uint64_t fallbacks; /* operations computed with a fallback key (fallback_keys) */
};

void kw_provider_stats(struct kw_provider_stats *out);

#endif
