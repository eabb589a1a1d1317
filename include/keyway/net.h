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
 * kw_sockaddr_format writes an IPv4 or IPv6 socket address as "1.2.3.4:5" or
 * "[::1]:5" into out, and `other` (e.g. "unix" or "-") for a NULL address or
 * any other family. out is always terminated when outlen > 0.
 */
void kw_sockaddr_format(const struct sockaddr *sa, const char *other, char *out, size_t outlen);

/* kw_addr_port returns the port of an IPv4/IPv6 address (0: any), or -1 for unix. */
int kw_addr_port(const struct kw_addr *a);

/* kw_addr_set_port sets the port of an IPv4/IPv6 address; a no-op for unix or port < 0. */
void kw_addr_set_port(struct kw_addr *a, int port);

/*
 * kw_listen opens a non-blocking, close-on-exec listening TCP socket with
 * SO_REUSEADDR (and SO_REUSEPORT when reuseport). Returns the fd or -errno.
 */
int kw_listen_tcp(const struct kw_addr *a, bool reuseport, int backlog);

/*
 * kw_listen_tcp_pin is kw_listen_tcp, and then, when a's port is 0, writes
 * the port the kernel picked into a, so that the next SO_REUSEPORT listener
 * opened on a (one per worker) joins the same port and a formats as the
 * address really listened on. Returns the fd or -errno (a is unchanged then).
 */
int kw_listen_tcp_pin(struct kw_addr *a, bool reuseport, int backlog);
/* kw_connect starts a non-blocking connect; returns the fd (connect may be in progress) or -errno.
 */
int kw_connect(const struct kw_addr *a);
/* kw_set_nonblock / kw_set_nodelay: 0 or -errno. */
int kw_set_nonblock(int fd);
int kw_set_nodelay(int fd);
/* kw_bound_port returns the local port of a bound socket, or -errno. */
int kw_bound_port(int fd);

/*
 * kw_raise_nofile raises the soft RLIMIT_NOFILE to the hard limit (a server
 * holds a descriptor or two per connection). 0 (also when already there) or
 * -errno from setrlimit; the limit now in force goes to *out when not NULL.
 */
int kw_raise_nofile(unsigned long *out);

#endif
