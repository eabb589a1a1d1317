/* net.c - address parsing and socket helpers (see keyway/net.h). */
#include "keyway/net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <unistd.h>

int kw_addr_parse(struct kw_addr *out, const char *text, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (strncmp(text, "unix:", 5) == 0) {
		const char *path = text + 5;
		struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
		if (path[0] != '/') {
			snprintf(err, errlen,
			         "'%s': a unix socket path must be absolute (unix:/path)", text);
			return -EINVAL;
		}
		if (strlen(path) >= sizeof(sun->sun_path)) {
			snprintf(err, errlen, "'%s': unix socket path longer than %zu bytes", text,
			         sizeof(sun->sun_path) - 1);
			return -EINVAL;
		}
		sun->sun_family = AF_UNIX;
		strcpy(sun->sun_path, path);
		out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(path) + 1);
		out->is_unix = true;
		return 0;
	}

	char host[256];
	const char *port;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':') {
			snprintf(err, errlen, "'%s': expected [IPv6]:PORT", text);
			return -EINVAL;
		}
		size_t n = (size_t)(close - text - 1);
		if (n == 0 || n >= sizeof(host)) {
			snprintf(err, errlen, "'%s': bad IPv6 address", text);
			return -EINVAL;
		}
		memcpy(host, text + 1, n);
		host[n] = '\0';
		port = close + 2;
	} else {
		const char *colon = strrchr(text, ':');
		if (colon == NULL || colon == text || strchr(text, ':') != colon) {
			snprintf(err, errlen, "'%s': expected HOST:PORT, [IPv6]:PORT or unix:/path",
			         text);
			return -EINVAL;
		}
		size_t n = (size_t)(colon - text);
		if (n >= sizeof(host)) {
			snprintf(err, errlen, "'%s': host name too long", text);
			return -EINVAL;
		}
		memcpy(host, text, n);
		host[n] = '\0';
		port = colon + 1;
	}
	char *end;
	errno = 0;
	unsigned long p = strtoul(port, &end, 10);
	if (port[0] == '\0' || *end != '\0' || errno || p > 65535) {
		snprintf(err, errlen, "'%s': port must be a number 0-65535", text);
		return -EINVAL;
	}

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int gai = getaddrinfo(host, NULL, &hints, &res);
	if (gai != 0 || res == NULL) {
		snprintf(err, errlen, "'%s': cannot resolve '%s': %s", text, host,
		         gai_strerror(gai));
		return -EINVAL;
	}
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	kw_addr_set_port(out, (int)p);
	snprintf(out->host, sizeof(out->host), "%s", host);
	return 0;
}

void kw_sockaddr_format(const struct sockaddr *sa, const char *other, char *out, size_t outlen)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	if (sa != NULL && sa->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)(const void *)sa;
		inet_ntop(AF_INET, &s->sin_addr, ip, sizeof(ip));
		snprintf(out, outlen, "%s:%u", ip, (unsigned)ntohs(s->sin_port));
	} else if (sa != NULL && sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)(const void *)sa;
		inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof(ip));
		snprintf(out, outlen, "[%s]:%u", ip, (unsigned)ntohs(s->sin6_port));
	} else {
		snprintf(out, outlen, "%s", other);
	}
}

void kw_addr_format(const struct kw_addr *a, char *out, size_t outlen)
{
	if (a->is_unix)
		snprintf(out, outlen, "unix:%s", ((const struct sockaddr_un *)&a->ss)->sun_path);
	else
		kw_sockaddr_format((const struct sockaddr *)&a->ss, "?", out, outlen);
}

int kw_addr_port(const struct kw_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return -1;
}

void kw_addr_set_port(struct kw_addr *a, int port)
{
	if (port < 0 || port > 65535)
		return;
	if (a->ss.ss_family == AF_INET)
		((struct sockaddr_in *)&a->ss)->sin_port = htons((uint16_t)port);
	else if (a->ss.ss_family == AF_INET6)
		((struct sockaddr_in6 *)&a->ss)->sin6_port = htons((uint16_t)port);
}

int kw_set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

int kw_set_nodelay(int fd)
{
	int one = 1;
	if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0)
		return -errno;
	return 0;
}

int kw_listen_tcp(const struct kw_addr *a, bool reuseport, int backlog)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0) ||
	    bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int kw_listen_tcp_pin(struct kw_addr *a, bool reuseport, int backlog)
{
	int fd = kw_listen_tcp(a, reuseport, backlog);
	if (fd >= 0)
		kw_addr_set_port(a, kw_bound_port(fd));
	return fd;
}

int kw_connect(const struct kw_addr *a)
{
	int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (!a->is_unix)
		kw_set_nodelay(fd);
	if (connect(fd, (const struct sockaddr *)&a->ss, a->len) < 0 && errno != EINPROGRESS) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int kw_bound_port(int fd)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0)
		return -errno;
	if (ss.ss_family == AF_INET)
		return ntohs(((struct sockaddr_in *)&ss)->sin_port);
	if (ss.ss_family == AF_INET6)
		return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	return -EAFNOSUPPORT;
}

int kw_raise_nofile(unsigned long *out)
{
	struct rlimit rl;
	int rc = 0;
	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return -errno;
	if (rl.rlim_cur < rl.rlim_max) {
		rlim_t was = rl.rlim_cur;
		rl.rlim_cur = rl.rlim_max;
		if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
			rc = -errno;
			rl.rlim_cur = was;
		}
	}
	if (out != NULL)
		*out = (unsigned long)rl.rlim_cur;
	return rc;
}
