/*
 * keyway/signals.h - a server's signals (SIGTERM, SIGHUP, ...) read from a
 * descriptor in its event loop instead of caught by a handler.
 */
#ifndef KEYWAY_SIGNALS_H
#define KEYWAY_SIGNALS_H

#include <stddef.h>

/*
 * kw_signalfd_open blocks the n signals of `signals` in the calling thread
 * and returns a non-blocking, close-on-exec signalfd that reads them. Call
 * it before starting any thread: threads inherit the mask, so the signals
 * reach only this descriptor. Returns the descriptor (the caller closes it),
 * or -errno (-EINVAL for an invalid signal number); on failure the signals
 * may already be blocked.
 */
int kw_signalfd_open(const int *signals, size_t n);

#endif
