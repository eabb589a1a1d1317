/*
 * quic_hs.h - the handshake threads of --quic-listen: a small pool that
 * runs the blocking steps of QUIC handshakes (GnuTLS signing with a
 * keyserver-held key, synchronously) off the workers' loops. A job is
 * handed back to the endpoint (port) it came from, whose loop collects it
 * before it sleeps (woken with kw_loop_wake).
 */
#ifndef KPX_QUIC_HS_H
#define KPX_QUIC_HS_H

#include <stdbool.h>

#include "keyway/loop.h"

struct kpx_qhs_job {
	struct kpx_qhs_job *next;
	void (*run)(struct kpx_qhs_job *j); /* on a handshake thread */
	struct kpx_qhs_port *port;
};

struct kpx_qhs_port;

/* kpx_qhs_port_new makes a port for loop; the pool starts with the first port (nthreads). */
struct kpx_qhs_port *kpx_qhs_port_new(struct kw_loop *loop, unsigned nthreads);
/* kpx_qhs_port_free frees p; it waits for p's jobs first (they are then dropped). */
void kpx_qhs_port_free(struct kpx_qhs_port *p);
/* kpx_qhs_submit queues j to run on a handshake thread; j->port is set to p. */
void kpx_qhs_submit(struct kpx_qhs_port *p, struct kpx_qhs_job *j);
/* kpx_qhs_collect takes p's finished jobs (a list, in finishing order; NULL: none). */
struct kpx_qhs_job *kpx_qhs_collect(struct kpx_qhs_port *p);
/* kpx_qhs_wait blocks until none of p's jobs is queued or running. */
void kpx_qhs_wait(struct kpx_qhs_port *p);

#endif
