/* metrics.h - keyway-proxy's Prometheus /metrics (see metrics.c). */
#ifndef KPX_METRICS_H
#define KPX_METRICS_H

#include "keyway/buf.h"
#include "keyway/loop.h"
#include "keyway/net.h"
#include "proxy.h"

struct kpx_metrics;

/*
 * kpx_metrics_serve starts libkeyway's /metrics server on addr in loop,
 * answering GET /metrics with the sum of the workers' blocks (see
 * keyway/metrics_server.h for the other answers and the limits), and writes
 * the port really listened on into addr (port 0: the kernel's pick). 0 or -errno.
 */
int kpx_metrics_serve(struct kpx_metrics **out, struct kw_loop *loop, struct kw_addr *addr,
                      struct kpx_worker *workers, unsigned nworkers, const struct kpx_options *opt);
void kpx_metrics_free(struct kpx_metrics *m);

/* kpx_metrics_render appends the exposition text to b. 0, or -ENOMEM. */
int kpx_metrics_render(struct kpx_metrics *m, struct kw_buf *b);

#endif
