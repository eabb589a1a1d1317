/*
 * keyway/metrics_server.h - the small HTTP/1.1 server behind every
 * --metrics flag: GET (or HEAD) /metrics answers 200 with the text a render
 * callback appends; another path answers 404, another method 405, a request
 * line that does not parse 400; one request per connection.
 *
 * It runs on a kw_loop and is built to be left open to a network:
 *  - a connection idle for idle_ms (10 s; counted from accept or from its
 *    last byte read or written) is closed;
 *  - past max_conns (64) open connections, a new one is accepted and closed
 *    at once;
 *  - when accept fails for want of descriptors (EMFILE, ENFILE) it never
 *    spins: a descriptor kept in reserve is closed to accept the connection
 *    and close it, and without a reserve the listener pauses for 100 ms.
 */
#ifndef KEYWAY_METRICS_SERVER_H
#define KEYWAY_METRICS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "keyway/buf.h"
#include "keyway/loop.h"
#include "keyway/net.h"

#define KW_METRICS_IDLE_MS 10000
#define KW_METRICS_MAX_CONNS 64

/*
 * kw_metrics_render_fn appends the exposition text to out (on the loop's
 * thread, once per scrape). 0, or a negative code: the scrape answers 500.
 */
typedef int (*kw_metrics_render_fn)(void *arg, struct kw_buf *out);

struct kw_metrics_server;

/* What the server did, for tests and logs. */
struct kw_metrics_server_stats {
	uint64_t accepted;  /* connections accepted and served */
	uint64_t refused;   /* accepted and closed at once: max_conns reached */
	uint64_t timed_out; /* closed after idle_ms without a byte */
	uint64_t no_fd;     /* accept failed with EMFILE/ENFILE */
	uint64_t paused;    /* ...and the listener paused (no reserve descriptor) */
	unsigned open;      /* connections open now */
};

/*
 * kw_metrics_server_new listens on addr (TCP) in loop and serves render(arg)
 * there until kw_metrics_server_free. 0, or -errno from the listening socket
 * (the caller words the message: it knows its flag's name).
 */
int kw_metrics_server_new(struct kw_metrics_server **out, struct kw_loop *loop,
                          const struct kw_addr *addr, kw_metrics_render_fn render, void *arg);

/* kw_metrics_server_set_limits changes idle_ms and max_conns (0 keeps the current value). */
void kw_metrics_server_set_limits(struct kw_metrics_server *s, unsigned idle_ms,
                                  unsigned max_conns);

/* kw_metrics_server_port returns the TCP port listened on (useful after port 0), or -errno. */
int kw_metrics_server_port(const struct kw_metrics_server *s);

/* kw_metrics_server_stats copies the counters into out. */
void kw_metrics_server_stats(const struct kw_metrics_server *s,
                             struct kw_metrics_server_stats *out);

/*
 * kw_metrics_server_free closes the listener and every connection (on the
 * loop's thread; the loop must still exist). NULL ok.
 */
void kw_metrics_server_free(struct kw_metrics_server *s);

#endif
