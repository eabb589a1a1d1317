/* metrics_server.c - the /metrics HTTP server (see keyway/metrics_server.h). */
#include "keyway/metrics_server.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "keyway/list.h"
#include "keyway/log.h"

#define REQUEST_MAX 4096
#define ACCEPTS_PER_TURN 16
#define PAUSE_MS 100 /* the listener's rest after EMFILE without a reserve descriptor */

struct mconn {
	struct kw_list link; /* in the server's conns */
	struct kw_metrics_server *s;
	int fd;
	struct kw_io io;
	struct kw_timer idle;
	bool responding; /* the request is in; out holds the answer */
	size_t reqlen;
	struct kw_buf out;
	char req[REQUEST_MAX];
};

struct kw_metrics_server {
	struct kw_loop *loop;
	kw_metrics_render_fn render;
	void *arg;
	unsigned idle_ms, max_conns;
	int lfd;
	int reserve_fd; /* spent on an EMFILE to accept-and-close; -1 if none */
	struct kw_io lio;
	struct kw_timer resume; /* restarts the listener after a pause */
	struct kw_list conns;   /* struct mconn.link */
	struct kw_metrics_server_stats st;
};

static int reserve_open(void)
{
	return open("/dev/null", O_RDONLY | O_CLOEXEC);
}

static void conn_close(struct mconn *c)
{
	struct kw_metrics_server *s = c->s;
	kw_io_stop(s->loop, &c->io);
	kw_timer_stop(s->loop, &c->idle);
	close(c->fd);
	kw_buf_cleanup(&c->out);
	kw_list_del(&c->link);
	s->st.open--;
	if (kw_loop_defer_free(s->loop, free, c) < 0)
		kw_warn("metrics: cannot defer a free; leaking %zu bytes", sizeof(*c));
}

/* progress restarts the idle clock: a byte moved. */
static void progress(struct mconn *c)
{
	if (kw_timer_start_ms(c->s->loop, &c->idle, c->s->idle_ms) < 0)
		conn_close(c); /* no memory for the timer: do not keep an unguarded connection */
}

static void conn_write(struct mconn *c)
{
	while (kw_buf_unread(&c->out) > 0) {
		ssize_t n = send(c->fd, kw_buf_head(&c->out), kw_buf_unread(&c->out), MSG_NOSIGNAL);
		if (n > 0) {
			kw_buf_consume(&c->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (kw_io_modify(c->s->loop, &c->io, KW_EV_WRITE) == 0) {
				progress(c);
				return;
			}
		}
		break;
	}
	shutdown(c->fd, SHUT_WR);
	conn_close(c);
}

/* status_of parses the request line: 200 (then *head tells HEAD), 400, 404 or 405. */
static const char *status_of(struct mconn *c, bool *head)
{
	char method[16] = "", path[256] = "";

	c->req[c->reqlen < sizeof(c->req) ? c->reqlen : sizeof(c->req) - 1] = '\0';
	*head = false;
	if (sscanf(c->req, "%15s %255s", method, path) != 2)
		return "400 Bad Request";
	char *q = strchr(path, '?');
	if (q != NULL)
		*q = '\0';
	if (strcmp(path, "/metrics") != 0)
		return "404 Not Found";
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return "405 Method Not Allowed";
	*head = strcmp(method, "HEAD") == 0;
	return "200 OK";
}

static void respond(struct mconn *c)
{
	struct kw_buf body = KW_BUF_INIT;
	const char *type = "text/plain; version=0.0.4; charset=utf-8";
	bool head;
	const char *status = status_of(c, &head);

	c->responding = true;
	if (strcmp(status, "200 OK") == 0 && c->s->render(c->s->arg, &body) < 0)
		status = "500 Internal Server Error";
	if (strcmp(status, "200 OK") != 0) {
		kw_buf_reset(&body);
		kw_buf_appendf(&body, "%s\n", status);
		type = "text/plain; charset=utf-8";
	}
	int rc = kw_buf_appendf(
	    &c->out,
	    "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
	    status, type, kw_buf_unread(&body));
	if (rc == 0 && !head && kw_buf_unread(&body) > 0)
		rc = kw_buf_append(&c->out, kw_buf_head(&body), kw_buf_unread(&body));
	kw_buf_cleanup(&body);
	if (rc < 0) {
		conn_close(c); /* out of memory: nothing sensible to send */
		return;
	}
	conn_write(c);
}

static void conn_read(struct mconn *c)
{
	for (;;) {
		if (c->reqlen >= sizeof(c->req) - 1) {
			respond(c); /* too long: answered 400 or 404 from what we have */
			return;
		}
		ssize_t n = recv(c->fd, c->req + c->reqlen, sizeof(c->req) - 1 - c->reqlen, 0);
		if (n > 0) {
			c->reqlen += (size_t)n;
			c->req[c->reqlen] = '\0';
			if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
				respond(c);
				return;
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			progress(c);
			return;
		}
		conn_close(c); /* EOF before a full request, or an error */
		return;
	}
}

static void on_conn(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct mconn *c = arg;
	(void)loop, (void)fd, (void)events;
	if (c->responding)
		conn_write(c);
	else
		conn_read(c);
}

static void on_idle(struct kw_loop *loop, void *arg)
{
	struct mconn *c = arg;
	(void)loop;
	c->s->st.timed_out++;
	conn_close(c);
}

static void conn_open(struct kw_metrics_server *s, int fd)
{
	struct mconn *c = NULL;

	if (s->st.open >= s->max_conns) {
		s->st.refused++;
		close(fd);
		return;
	}
	if ((c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return;
	}
	c->s = s;
	c->fd = fd;
	kw_io_init(&c->io, on_conn, c);
	kw_timer_init(&c->idle, on_idle, c);
	if (kw_io_start(s->loop, &c->io, fd, KW_EV_READ) < 0 ||
	    kw_timer_start_ms(s->loop, &c->idle, s->idle_ms) < 0) {
		kw_io_stop(s->loop, &c->io);
		close(fd);
		free(c);
		return;
	}
	kw_list_add_tail(&s->conns, &c->link);
	s->st.open++;
	s->st.accepted++;
}

static void on_resume(struct kw_loop *loop, void *arg)
{
	struct kw_metrics_server *s = arg;
	if (s->reserve_fd < 0)
		s->reserve_fd = reserve_open();
	if (kw_io_start(loop, &s->lio, s->lfd, KW_EV_READ) < 0 &&
	    kw_timer_start_ms(loop, &s->resume, PAUSE_MS) < 0)
		kw_warn("metrics: cannot watch the listener again; /metrics stops answering");
}

/*
 * out_of_fds handles EMFILE/ENFILE without leaving the connection in the
 * backlog (the listener would stay readable and the loop spin): spend the
 * reserve descriptor to accept and close it, or pause the listener.
 */
static void out_of_fds(struct kw_metrics_server *s)
{
	s->st.no_fd++;
	if (s->reserve_fd >= 0) {
		close(s->reserve_fd);
		int cfd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd >= 0)
			close(cfd);
		s->reserve_fd = reserve_open();
		return;
	}
	s->st.paused++;
	kw_io_stop(s->loop, &s->lio);
	if (kw_timer_start_ms(s->loop, &s->resume, PAUSE_MS) < 0)
		on_resume(s->loop, s);
}

static void on_listen(struct kw_loop *loop, int fd, unsigned events, void *arg)
{
	struct kw_metrics_server *s = arg;
	(void)loop, (void)events;
	for (int i = 0; i < ACCEPTS_PER_TURN; i++) {
		int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (cfd >= 0) {
			conn_open(s, cfd);
			continue;
		}
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if (errno == EMFILE || errno == ENFILE)
			out_of_fds(s);
		return; /* EAGAIN, or an error the next readiness retries */
	}
}

int kw_metrics_server_new(struct kw_metrics_server **out, struct kw_loop *loop,
                          const struct kw_addr *addr, kw_metrics_render_fn render, void *arg)
{
	struct kw_metrics_server *s = calloc(1, sizeof(*s));
	int rc;

	*out = NULL;
	if (s == NULL)
		return -ENOMEM;
	s->loop = loop;
	s->render = render;
	s->arg = arg;
	s->idle_ms = KW_METRICS_IDLE_MS;
	s->max_conns = KW_METRICS_MAX_CONNS;
	kw_list_init(&s->conns);
	kw_io_init(&s->lio, on_listen, s);
	kw_timer_init(&s->resume, on_resume, s);
	s->lfd = kw_listen_tcp(addr, false, 64);
	if (s->lfd < 0) {
		rc = s->lfd;
		free(s);
		return rc;
	}
	if ((rc = kw_io_start(loop, &s->lio, s->lfd, KW_EV_READ)) < 0) {
		close(s->lfd);
		free(s);
		return rc;
	}
	s->reserve_fd = reserve_open(); /* none (-1) is allowed: pausing is the fallback */
	*out = s;
	return 0;
}

void kw_metrics_server_set_limits(struct kw_metrics_server *s, unsigned idle_ms, unsigned max_conns)
{
	if (idle_ms != 0)
		s->idle_ms = idle_ms;
	if (max_conns != 0)
		s->max_conns = max_conns;
}

int kw_metrics_server_port(const struct kw_metrics_server *s)
{
	return kw_bound_port(s->lfd);
}

void kw_metrics_server_stats(const struct kw_metrics_server *s, struct kw_metrics_server_stats *out)
{
	*out = s->st;
}

void kw_metrics_server_free(struct kw_metrics_server *s)
{
	if (s == NULL)
		return;
	while (!kw_list_empty(&s->conns))
		conn_close(kw_list_entry(kw_list_first(&s->conns), struct mconn, link));
	kw_io_stop(s->loop, &s->lio);
	kw_timer_stop(s->loop, &s->resume);
	close(s->lfd);
	if (s->reserve_fd >= 0)
		close(s->reserve_fd);
	free(s);
}
