/*
 * keyway/net.h - addresses and sockets.
 *
 * Address syntax, shared by every program: "host:port", "[v6addr]:port",
 * "unix:/absolute/path". Hosts are IP literals or names resolved at parse
 * time (getaddrinfo, first result).
 */
#ifndef KEYWAY_NET_H
#define KEYWAY_NET_H

#include <stdbool.h>
#include <sys/socket.h>

struct kw_addr {
	struct sockaddr_storage ss;
	socklen_t len;
	char host[256]; /* the host part as written (for TLS name checks/SNI); "" for unix */
	bool is_unix;
};

/* kw_addr_parse parses text into out; 0, or -EINVAL with a reason in err. */
int kw_addr_parse(struct kw_addr *out, const char *text, char *err, size_t errlen);
/* kw_addr_format writes "1.2.3.4:5", "[::1]:5" or "unix:/p" into out. */
void kw_addr_format(const struct kw_addr *a, char *out, size_t outlen);

/*
 * kw_listen opens a non-blocking, close-on-exec listening TCP socket with
 * SO_REUSEADDR (and SO_REUSEPORT when reuseport). Returns the fd or -errno.
 */
int kw_listen_tcp(const struct kw_addr *a, bool reuseport, int backlog);
/* kw_connect starts a non-blocking connect; returns the fd (connect may be in progress) or -errno. */
int kw_connect(const struct kw_addr *a);
/* kw_set_nonblock / kw_set_nodelay: 0 or -errno. */
int kw_set_nonblock(int fd);
int kw_set_nodelay(int fd);
/* kw_bound_port returns the local port of a bound socket, or -errno. */
int kw_bound_port(int fd);

#endif
