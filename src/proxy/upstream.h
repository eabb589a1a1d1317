/*
 * upstream.h - --upstream: after the handshake, relay the client's
 * plaintext stream to a TCP server and back (bounded buffers, half-close,
 * optional PROXY v2 header; see upstream.c).
 */
#ifndef KPX_UPSTREAM_H
#define KPX_UPSTREAM_H

#include <stddef.h>

#include "proxy.h"

/* kpx_upstream_ops is the mode table the worker gives each connection under --upstream. */
extern const struct kpx_mode_ops kpx_upstream_ops;

/*
 * kpx_upstream_check parses --upstream into o->upstream_addr and checks that
 * --send-proxy-v2 has an upstream. 0, or -KW_ECONFIG with the reason and
 * fix in err.
 */
struct kw_option;
int kpx_upstream_check(struct kpx_options *o, const struct kw_option *opts, char *err,
                       size_t errlen);

#endif
