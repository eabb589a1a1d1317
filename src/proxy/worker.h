/*
 * worker.h - a worker thread: its loop, listener, ASYNC job pool, offload
 * backend, poller, wait lists and connections (struct kpx_worker in
 * proxy.h). The main thread makes, starts, stops and frees workers.
 */
#ifndef KPX_WORKER_H
#define KPX_WORKER_H

#include "proxy.h"

/* kpx_worker_init prepares w (its loop; the listener lfd becomes w's). 0 or -errno. */
int kpx_worker_init(struct kpx_worker *w, unsigned id, const struct kpx_options *opt, int lfd);
/* kpx_worker_start runs w on a new thread that takes no signals. 0 or -errno. */
int kpx_worker_start(struct kpx_worker *w);
/* kpx_worker_stop asks w to drain (within --drain-timeout) and end; any thread. */
void kpx_worker_stop(struct kpx_worker *w);
/* kpx_worker_join waits for a started w's thread to end. */
void kpx_worker_join(struct kpx_worker *w);
/* kpx_worker_cleanup frees what kpx_worker_init made (after join). */
void kpx_worker_cleanup(struct kpx_worker *w);

#endif
