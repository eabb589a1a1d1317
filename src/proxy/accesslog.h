/*
 * accesslog.h - keyway-proxy's access log: one key=value line per
 * connection when it closes (format in accesslog.c), to stderr, a file
 * (--access-log, reopened on SIGHUP) or nowhere.
 */
#ifndef KPX_ACCESSLOG_H
#define KPX_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proxy.h"

/* kpx_accesslog_conn writes c's line (c's SSL still alive); any worker thread. */
void kpx_accesslog_conn(const struct kpx_conn *c);
/* What the access log says about a QUIC connection (quic_conn.c fills it). */
struct kpx_access_quic {
	const struct sockaddr *peer;
	const char *sni, *cipher;        /* NULL: none (no handshake) */
	uint64_t start_ns, handshake_ns; /* handshake_ns 0: none */
	uint64_t requests, rx_udp, tx_udp;
	enum kpx_reason reason;
};
/* kpx_accesslog_quic writes the line of a QUIC connection (proto=h3); any worker thread. */
void kpx_accesslog_quic(const struct kpx_worker *w, const struct kpx_access_quic *q);
/* kpx_accesslog_refused writes the line of a connection refused by --max-connections. */
void kpx_accesslog_refused(const struct kpx_worker *w, const struct sockaddr *peer);
/* kpx_accesslog_open sets o->access_fd from --access-log (FILE, - for stderr, off);
 * 0 or -errno with the reason and fix in err. */
int kpx_accesslog_open(struct kpx_options *o, char *err, size_t errlen);
/* kpx_accesslog_reopen reopens the --access-log file in place (after log rotation); 0 or
 * -errno. */
int kpx_accesslog_reopen(const struct kpx_options *o);
/* kpx_accesslog_close closes what kpx_accesslog_open opened. */
void kpx_accesslog_close(struct kpx_options *o);

#endif
