/* stats.c - the names of the close reasons (see stats.h). */
#include "stats.h"

const char *const kpx_reason_names[KPX_NREASON] = {
    "-",
    "done",
    "client-close",
    "upstream-close",
    "upstream-connect-failed",
    "upstream-timeout",
    "idle-timeout",
    "handshake-timeout",
    "handshake-failed",
    "too-many-bytes",
    "max-connections",
    "drain",
    "tls-error",
    "http-error",
    "request-timeout",
    "internal",
};
