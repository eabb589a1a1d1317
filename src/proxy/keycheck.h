/* keycheck.h - does a keyserver hold each keyway key? (see keycheck.c) */
#ifndef KPX_KEYCHECK_H
#define KPX_KEYCHECK_H

#include "keyway/loop.h"
#include "proxy.h"
#include "tlsctx.h"

struct kpx_keycheck;

/* kpx_keycheck_new makes a checker on loop (the main thread's); NULL: out of memory. */
struct kpx_keycheck *kpx_keycheck_new(struct kw_loop *loop, const struct kpx_options *o);

/*
 * kpx_keycheck_run asks the keyservers, without waiting, about the key of
 * every --key of t held by keyservers; the answers arrive in loop. A key
 * not found is a warning, and with --require-keys t refuses its certificate.
 */
void kpx_keycheck_run(struct kpx_keycheck *kc, struct kpx_tls *t);

/* kpx_keycheck_free drops the checks still in flight unanswered. NULL ok. */
void kpx_keycheck_free(struct kpx_keycheck *kc);

#endif
