/*
 * term.c - start-up checks of the TLS-terminator options: the mode
 * (--respond or --upstream), the upstream address, the access log, and the
 * descriptor limit a terminator needs (two descriptors per relayed
 * connection).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "keyway/err.h"
#include "keyway/log.h"
#include "proxy.h"

int kpx_term_check(struct kpx_options *o, char *err, size_t errlen)
{
	if (o->respond == (o->upstream != NULL)) {
		snprintf(err, errlen,
		         "%s; fix: give exactly one of --respond (answer each request with a fixed "
		         "response) or --upstream HOST:PORT (relay to a TCP server)",
		         o->respond ? "both --respond and --upstream given" : "no mode given");
		return -KW_ECONFIG;
	}
	if (o->upstream != NULL) {
		char why[512];
		if (kw_addr_parse(&o->upstream_addr, o->upstream, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "--upstream %s: %s; fix: give HOST:PORT", o->upstream,
			         why);
			return -KW_ECONFIG;
		}
	}
	if (o->send_proxy_v2 && o->upstream == NULL) {
		snprintf(err, errlen,
		         "--send-proxy-v2 needs --upstream; fix: add --upstream "
		         "HOST:PORT or drop --send-proxy-v2");
		return -KW_ECONFIG;
	}
	/* Raise the soft descriptor limit to the hard one: every relayed connection takes two. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
			kw_warn("cannot raise the descriptor limit: %s", strerror(errno));
	}
	if (kpx_alog_open(o, err, errlen) < 0)
		return -KW_ECONFIG;
	return 0;
}
