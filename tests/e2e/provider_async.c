/*
 * provider_async.c - drives many concurrent TLS handshakes in SSL_MODE_ASYNC
 * against a server key of the keyway provider, in one thread, over BIO
 * pairs (client and server in the same process), the way an event-driven
 * server does: a handshake that gets SSL_ERROR_WANT_ASYNC is parked until
 * its notification -- the wait context's callback (SSL_CTX_set_async_
 * callback) or its async fds becoming readable -- and the loop goes on with
 * the others. The client verifies the server (so every signature is
 * checked) and one record goes each way on every connection.
 *
 * Usage: provider_async [options]
 *   --key FILE --cert FILE --ca FILE   server key (reference PEM, or a local private
 *                                      key with --local), its certificate, the CA
 *   --provider-dir DIR   load keyway.so from DIR (internal polling); without it the
 *                        provider is the built-in copy linked here (kw_provider_init)
 *   --backend keyless|threads|inline   built-in only: bind such a backend to this
 *                        thread (external polling; threads/inline need --local)
 *   --local              wrap --key, a local private key, with kw_provider_wrap_key
 *   --notify cb|fd       callback mode (default) or async fds
 *   -n N -c C            N handshakes, C at a time (default 200, 50)
 *   --spurious           resume each handshake once right after WANT_ASYNC (before
 *                        its notification): such a resume must pause again
 *   --abandon K          free the first K servers while their job is paused (as
 *                        HAProxy does); they count as neither done nor failed
 *   --abandon-waiting    abandon only servers paused in a capacity queue
 *                        (ASYNC_STATUS_EAGAIN): a freed slot must not wake them
 *   --ring N             threads backend: ring slots (a small one fills up)
 *   --sync-threads T     no SSL_MODE_ASYNC: T threads each run their share of the
 *                        handshakes one by one, blocking in the provider
 *   --tls12 CIPHERS      TLS 1.2 with these ciphers (default: TLS 1.3); with an RSA key,
 *                        AES128-GCM-SHA256 makes the server decrypt (RSA key exchange)
 *
 * Prints "done N failed F abandoned A", "fds BEFORE AFTER" (open descriptors
 * after a warm-up handshake and after everything was freed) and, when the
 * provider is built in, its counters, and "late_callbacks L": async callbacks
 * that came for a server SSL already freed (a use after free the provider
 * must prevent), and "callbacks_during_free D": callbacks that ran while
 * SSL_free was freeing their server (allowed: SSL_free waits for them; the
 * callback finds no app data and ignores them). Exit 0 when every handshake
 * not abandoned completed and L is 0.
 */
#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <openssl/async.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/ssl.h>

#include "keyway/backend.h"
#include "keyway/backend_keyless.h"
#include "keyway/loop.h"
#include "keyway/provider_api.h"

struct pair {
	int id;
	SSL *srv, *cli;
	bool used, srv_done, cli_done, parked, notified, spurred;
};

static struct {
	const char *key, *cert, *ca, *provider_dir, *backend, *tls12;
	bool local, fd_mode, spurious, abandon_waiting;
	int n, c, abandon, ring, sync_threads;
} opt = {.backend = NULL, .n = 200, .c = 50, .ring = 0};

static struct pair *pairs;
static int started, done, failed, abandoned;

/* Callback notifications may come from the provider's I/O thread. */
static pthread_mutex_t q_mu = PTHREAD_MUTEX_INITIALIZER;
static int *q;
static int q_len, q_cap;
static bool q_overflow; /* then every parked pair counts as notified: a resume too many is fine */
static int wake_fd = -1;

/* Server SSLs freed while their job was paused (guarded by q_mu): no callback may name one. */
static SSL **gone;
static int gone_len, gone_cap;
static int late_callbacks;
static int callbacks_during_free; /* came while SSL_free ran: allowed, ignored */

static struct kw_loop *loop;
static struct kw_backend *backend;

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	int n = 0;
	if (d == NULL)
		return -1;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the DIR's own descriptor */
}

/* is_gone tells whether s is a freed server's address (q_mu held). */
static bool is_gone(const SSL *s)
{
	for (int i = 0; i < gone_len; i++)
		if (gone[i] == s)
			return true;
	return false;
}

static int async_cb(SSL *s, void *arg)
{
	pthread_mutex_lock(&q_mu);
	if (is_gone(s)) {
		/* libssl already read the freed SSL to get here: count it, touch nothing. */
		late_callbacks++;
		pthread_mutex_unlock(&q_mu);
		return 0;
	}
	/* NULL: s is being freed on the driver thread (see pair_free), which waits for us. */
	struct pair *p = SSL_get_app_data(s);
	if (p == NULL) {
		callbacks_during_free++;
		pthread_mutex_unlock(&q_mu);
		return 0;
	}
	if (q_len < q_cap)
		q[q_len++] = p->id;
	else
		q_overflow = true;
	pthread_mutex_unlock(&q_mu);
	if (backend == NULL) {
		uint64_t one = 1;
		ssize_t w = write(wake_fd, &one, sizeof(one));
		(void)w;
	}
	return 1;
}

static void take_notifications(void)
{
	pthread_mutex_lock(&q_mu);
	for (int i = 0; i < q_len; i++) {
		struct pair *p = &pairs[q[i]];
		if (p->used)
			p->notified = true;
	}
	q_len = 0;
	if (q_overflow)
		for (int i = 0; i < opt.c; i++)
			pairs[i].notified = pairs[i].used;
	q_overflow = false;
	pthread_mutex_unlock(&q_mu);
}

static void die(const char *what)
{
	fprintf(stderr, "provider_async: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(2);
}

static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key = NULL;
	FILE *f = fopen(opt.key, "r");

	if (ctx == NULL || f == NULL)
		die("server context");
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if (key == NULL)
		die("cannot read --key");
	if (opt.local) {
		EVP_PKEY *wrapped = NULL;
		if (!kw_provider_wrap_key(NULL, key, &wrapped))
			die("kw_provider_wrap_key");
		EVP_PKEY_free(key);
		key = wrapped;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, opt.cert) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)
		die("server certificate and key");
	EVP_PKEY_free(key);
	SSL_CTX_set_mode(ctx, SSL_MODE_ASYNC);
	SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (!opt.fd_mode)
		SSL_CTX_set_async_callback(ctx, async_cb);
	return ctx;
}

static SSL_CTX *client_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1)
		die("client context");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (opt.tls12) {
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
		if (SSL_CTX_set_cipher_list(ctx, opt.tls12) != 1)
			die("--tls12 ciphers");
	} else {
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	}
	return ctx;
}

static void pair_start(struct pair *p, SSL_CTX *sctx, SSL_CTX *cctx)
{
	BIO *b1 = NULL, *b2 = NULL;

	memset(p, 0, sizeof(*p));
	p->id = (int)(p - pairs);
	p->used = true;
	p->srv = SSL_new(sctx);
	p->cli = SSL_new(cctx);
	if (p->srv == NULL || p->cli == NULL || BIO_new_bio_pair(&b1, 0, &b2, 0) != 1)
		die("pair");
	SSL_set_app_data(p->srv, p);
	pthread_mutex_lock(&q_mu);
	for (int i = 0; i < gone_len; i++)
		if (gone[i] == p->srv)
			gone[i] = gone[--gone_len]; /* the address was reused: a live SSL again */
	pthread_mutex_unlock(&q_mu);
	SSL_set_bio(p->srv, b1, b1);
	SSL_set_bio(p->cli, b2, b2);
	SSL_set_accept_state(p->srv);
	SSL_set_connect_state(p->cli);
	SSL_set1_host(p->cli, "localhost");
	SSL_set_tlsext_host_name(p->cli, "localhost");
	started++;
}

static void pair_free(struct pair *p)
{
	/*
	 * A callback can start on the provider's thread until SSL_free reaches
	 * the wait context, late in SSL_free (after the ex_data is gone): tell it
	 * first, under its lock, that this server is going away.
	 */
	pthread_mutex_lock(&q_mu);
	SSL_set_app_data(p->srv, NULL);
	pthread_mutex_unlock(&q_mu);
	SSL_free(p->srv);
	SSL_free(p->cli);
	p->srv = p->cli = NULL;
	p->used = false;
}

/* finish exchanges one record each way and closes the pair. */
static void finish(struct pair *p)
{
	char buf[16];
	int ok = SSL_write(p->cli, "ping", 4) == 4 && SSL_read(p->srv, buf, sizeof(buf)) == 4 &&
	         memcmp(buf, "ping", 4) == 0 && SSL_write(p->srv, "pong", 4) == 4 &&
	         SSL_read(p->cli, buf, sizeof(buf)) == 4 && memcmp(buf, "pong", 4) == 0;
	if (ok)
		done++;
	else {
		failed++;
		fprintf(stderr, "pair %d: data exchange failed\n", p->id);
		ERR_print_errors_fp(stderr);
	}
	pair_free(p);
}

/* handshake takes one handshake step on ssl: SSL_ERROR_NONE once it is done, else
 * what SSL_get_error says it waits for. */
static int handshake(SSL *ssl)
{
	ERR_clear_error();
	int r = SSL_do_handshake(ssl);
	return r == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, r);
}

/* pair_failed reports the side's handshake error e, counts it and frees the pair; true. */
static bool pair_failed(struct pair *p, const char *side, int e)
{
	fprintf(stderr, "pair %d: %s handshake error %d\n", p->id, side, e);
	ERR_print_errors_fp(stderr);
	failed++;
	pair_free(p);
	return true;
}

/* step drives both ends as far as they go without waiting; true when it progressed. */
static bool step(struct pair *p)
{
	bool progress = false;

	for (int rounds = 0; rounds < 8 && p->used && !p->parked; rounds++) {
		bool moved = false;
		if (!p->cli_done) {
			int e = handshake(p->cli);
			if (e == SSL_ERROR_NONE)
				p->cli_done = moved = true;
			else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)
				return pair_failed(p, "client", e);
		}
		if (!p->srv_done) {
			int e = handshake(p->srv);
			if (e == SSL_ERROR_NONE) {
				p->srv_done = moved = true;
			} else if (e == SSL_ERROR_WANT_ASYNC && opt.spurious && !p->spurred) {
				/* An impatient application: resume at once, before the
				 * notification. */
				p->spurred = moved = true;
			} else if (e == SSL_ERROR_WANT_ASYNC) {
				p->parked = true;
			} else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
				return pair_failed(p, "server", e);
			}
		}
		if (p->srv_done && p->cli_done) {
			finish(p);
			return true;
		}
		if (!moved)
			break;
		progress = true;
	}
	return progress;
}

/* fds_ready unparks the parked pairs whose async fds are readable; waits at most ms. */
static void fds_ready(int ms)
{
	struct pollfd *pf = calloc((size_t)opt.c * 4 + 1, sizeof(*pf));
	int *owner = calloc((size_t)opt.c * 4 + 1, sizeof(*owner));
	nfds_t n = 0;

	for (int i = 0; i < opt.c; i++) {
		struct pair *p = &pairs[i];
		OSSL_ASYNC_FD fds[4];
		size_t nf = 0;
		if (!p->used || !p->parked || !SSL_get_all_async_fds(p->srv, NULL, &nf) || nf > 4 ||
		    !SSL_get_all_async_fds(p->srv, fds, &nf))
			continue;
		for (size_t k = 0; k < nf; k++) {
			pf[n].fd = fds[k];
			pf[n].events = POLLIN;
			owner[n++] = i;
		}
	}
	if (n > 0 && poll(pf, n, ms) > 0) {
		for (nfds_t k = 0; k < n; k++)
			if (pf[k].revents & POLLIN)
				pairs[owner[k]].notified = true;
	} else if (n == 0 && ms > 0) {
		usleep(1000);
	}
	free(pf);
	free(owner);
}

/* abandonable tells whether --abandon may free p's server now. */
static bool abandonable(const struct pair *p)
{
	int status = ASYNC_STATUS_UNSUPPORTED;

	if (!opt.abandon_waiting)
		return true;
	return SSL_get_async_status(p->srv, &status) == 1 && status == ASYNC_STATUS_EAGAIN;
}

/* wait_events blocks until something may have completed (at most ~ms). */
static void wait_events(int ms)
{
	if (backend != NULL && loop != NULL) {
		kw_loop_run_once(loop, opt.fd_mode ? 0 : ms);
	} else if (backend != NULL) {
		/* A local backend: reap completions; sleep on its wake fd when there are none. */
		if (kw_backend_poll(backend, 256) == 0) {
			int fd = kw_backend_wake_fd(backend);
			if (fd >= 0 && kw_backend_arm(backend)) {
				struct pollfd pf = {.fd = fd, .events = POLLIN};
				(void)poll(&pf, 1, opt.fd_mode ? 0 : ms);
				kw_backend_disarm(backend);
				kw_backend_drain_wake_fd(backend);
			}
		}
	} else if (!opt.fd_mode) {
		struct pollfd pf = {.fd = wake_fd, .events = POLLIN};
		if (poll(&pf, 1, ms) > 0) {
			uint64_t v;
			ssize_t r = read(wake_fd, &v, sizeof(v));
			(void)r;
		}
	}
	if (opt.fd_mode)
		fds_ready(backend != NULL ? 1 : ms);
	take_notifications();
}

/* ---- --sync-threads: blocking handshakes on several threads ---- */

static SSL_CTX *g_sctx, *g_cctx;
static pthread_mutex_t sync_mu = PTHREAD_MUTEX_INITIALIZER;

static void *sync_thread(void *arg)
{
	int share = *(int *)arg, ok = 0, bad = 0;

	for (int i = 0; i < share; i++) {
		SSL *srv = SSL_new(g_sctx), *cli = SSL_new(g_cctx);
		BIO *b1 = NULL, *b2 = NULL;
		int sd = 0, cd = 0, spins = 0;
		if (srv == NULL || cli == NULL || BIO_new_bio_pair(&b1, 0, &b2, 0) != 1)
			die("pair");
		SSL_clear_mode(srv, SSL_MODE_ASYNC);
		SSL_set_bio(srv, b1, b1);
		SSL_set_bio(cli, b2, b2);
		SSL_set_accept_state(srv);
		SSL_set_connect_state(cli);
		SSL_set1_host(cli, "localhost");
		while ((!sd || !cd) && spins++ < 100) {
			if (!cd)
				cd = SSL_do_handshake(cli) == 1;
			if (!sd) {
				int r = SSL_do_handshake(srv);
				sd = r == 1;
				if (r <= 0 && SSL_get_error(srv, r) != SSL_ERROR_WANT_READ)
					break;
			}
		}
		char buf[8];
		if (sd && cd && SSL_write(cli, "ping", 4) == 4 && SSL_read(srv, buf, 8) == 4)
			ok++;
		else
			bad++;
		ERR_clear_error();
		SSL_free(srv);
		SSL_free(cli);
	}
	pthread_mutex_lock(&sync_mu);
	done += ok;
	failed += bad;
	pthread_mutex_unlock(&sync_mu);
	return NULL;
}

static void run_sync_threads(void)
{
	pthread_t th[64];
	int share[64];
	int t = opt.sync_threads > 64 ? 64 : opt.sync_threads;

	for (int i = 0; i < t; i++) {
		share[i] = opt.n / t + (i < opt.n % t);
		pthread_create(&th[i], NULL, sync_thread, &share[i]);
	}
	for (int i = 0; i < t; i++)
		pthread_join(th[i], NULL);
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: provider_async --key F --cert F --ca F [options] (see the source)\n");
	exit(2);
}

int main(int argc, char **argv)
{
	/* Keyserver connections on our own threads (external polling) write with write(2). */
	signal(SIGPIPE, SIG_IGN);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--key") && v)
			opt.key = v, i++;
		else if (!strcmp(a, "--cert") && v)
			opt.cert = v, i++;
		else if (!strcmp(a, "--ca") && v)
			opt.ca = v, i++;
		else if (!strcmp(a, "--provider-dir") && v)
			opt.provider_dir = v, i++;
		else if (!strcmp(a, "--backend") && v)
			opt.backend = v, i++;
		else if (!strcmp(a, "--notify") && v)
			opt.fd_mode = !strcmp(v, "fd"), i++;
		else if (!strcmp(a, "-n") && v)
			opt.n = atoi(v), i++;
		else if (!strcmp(a, "-c") && v)
			opt.c = atoi(v), i++;
		else if (!strcmp(a, "--abandon") && v)
			opt.abandon = atoi(v), i++;
		else if (!strcmp(a, "--sync-threads") && v)
			opt.sync_threads = atoi(v), i++;
		else if (!strcmp(a, "--ring") && v)
			opt.ring = atoi(v), i++;
		else if (!strcmp(a, "--local"))
			opt.local = true;
		else if (!strcmp(a, "--spurious"))
			opt.spurious = true;
		else if (!strcmp(a, "--abandon-waiting"))
			opt.abandon_waiting = true;
		else if (!strcmp(a, "--tls12") && v)
			opt.tls12 = v, i++;
		else
			usage();
	}
	if (!opt.key || !opt.cert || !opt.ca || opt.n < 1 || opt.c < 1)
		usage();

	OSSL_PROVIDER *kp, *dp;
	if (opt.provider_dir != NULL) {
		OSSL_PROVIDER_set_default_search_path(NULL, opt.provider_dir);
	} else if (OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) != 1) {
		die("OSSL_PROVIDER_add_builtin");
	}
	if ((kp = OSSL_PROVIDER_load(NULL, "keyway")) == NULL ||
	    (dp = OSSL_PROVIDER_load(NULL, "default")) == NULL)
		die("loading the providers");

	if (opt.backend != NULL) {
		char err[512];
		int rc = -1;
		if (opt.provider_dir != NULL)
			die("--backend needs the built-in provider");
		if (!strcmp(opt.backend, "keyless")) {
			if (kw_loop_new(&loop) < 0)
				die("loop");
			rc = kw_provider_keyless_backend(kp, loop, &backend, err, sizeof(err));
		} else if (!strcmp(opt.backend, "threads")) {
			rc =
			    kw_backend_threads_new(&backend, 1, opt.ring ? (unsigned)opt.ring : 64);
		} else if (!strcmp(opt.backend, "inline")) {
			rc = kw_backend_inline_new(&backend);
		}
		if (rc < 0) {
			fprintf(stderr, "provider_async: backend %s: %s\n", opt.backend,
			        rc == -1 ? "unknown" : err);
			return 2;
		}
		kw_backend_bind_thread(backend);
	}

	if ((wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0)
		die("eventfd");
	pairs = calloc((size_t)opt.c, sizeof(*pairs));
	q_cap = opt.c * 64;
	q = calloc((size_t)q_cap, sizeof(*q));
	gone_cap = opt.abandon;
	gone = calloc((size_t)gone_cap + 1, sizeof(*gone));
	SSL_CTX *sctx = server_ctx(), *cctx = client_ctx();

	/* A warm-up handshake: the provider's steady descriptors exist after it. */
	int want = opt.n;
	int saved_c = opt.c;
	opt.c = 1;
	opt.n = 1;
	uint64_t deadline = now_ms() + 60000;
	int fds_warm = -1;
	g_sctx = sctx;
	g_cctx = cctx;
	for (int phase = 0; phase < 2; phase++) {
		if (phase == 1 && opt.sync_threads > 0) {
			run_sync_threads();
			break;
		}
		int to_abandon = phase == 1 ? opt.abandon : 0;
		started = 0;
		while ((done + failed + abandoned < opt.n) && now_ms() < deadline) {
			bool progress = false;
			for (int i = 0; i < opt.c; i++) {
				struct pair *p = &pairs[i];
				if (!p->used && started < opt.n) {
					pair_start(p, sctx, cctx);
					progress = true;
				}
				if (!p->used)
					continue;
				if (p->parked && p->notified)
					p->parked = p->notified = p->spurred = false;
				if (!p->parked)
					progress |= step(p);
				if (p->used && p->parked && to_abandon > 0 && abandonable(p)) {
					/* HAProxy frees an SSL whose job is paused. */
					SSL *srv = p->srv;
					pair_free(p);
					pthread_mutex_lock(&q_mu);
					if (gone_len < gone_cap)
						gone[gone_len++] = srv;
					pthread_mutex_unlock(&q_mu);
					abandoned++;
					to_abandon--;
					progress = true;
				}
			}
			if (!progress)
				wait_events(50);
			else
				take_notifications();
		}
		if (phase == 0) {
			if (done != 1) {
				fprintf(stderr, "provider_async: the warm-up handshake failed\n");
				return 1;
			}
			done = 0;
			opt.n = want;
			opt.c = saved_c;
			fds_warm = count_fds();
		}
	}

	/* Late completions of abandoned ops: they must touch nothing. */
	for (int i = 0; i < 20; i++)
		wait_events(10);
	for (int i = 0; i < opt.c; i++)
		if (pairs[i].used)
			pair_free(&pairs[i]); /* only after a timeout */
	printf("done %d failed %d abandoned %d\n", done, failed, abandoned);
	printf("fds %d %d\n", fds_warm, count_fds());
	pthread_mutex_lock(&q_mu);
	int late = late_callbacks, during = callbacks_during_free;
	pthread_mutex_unlock(&q_mu);
	printf("late_callbacks %d\n", late);
	printf("callbacks_during_free %d\n", during);
	fflush(stdout);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	if (backend != NULL) {
		struct kw_keyless_stats ks;
		struct kw_threads_stats ts;
		if (kw_backend_keyless_stats(backend, &ks) == 0)
			printf("backend_submitted %llu\n", (unsigned long long)ks.submitted);
		else if (kw_backend_threads_stats(backend, &ts) == 0)
			printf("backend_submitted %llu\n", (unsigned long long)ts.submitted);
		kw_backend_bind_thread(NULL);
		kw_backend_free(backend);
		if (loop != NULL) {
			kw_loop_run_once(loop, 0);
			kw_loop_free(loop);
		}
	}
	if (opt.provider_dir == NULL) {
		struct kw_provider_stats st;
		kw_provider_stats(&st);
		printf("ops_submitted %llu\npauses %llu\nspurious_resumes %llu\neagain %llu\n"
		       "fd_wakeups %llu\ncallback_wakeups %llu\neventfds_created %llu\n",
		       (unsigned long long)st.ops_submitted, (unsigned long long)st.pauses,
		       (unsigned long long)st.spurious_resumes, (unsigned long long)st.eagain,
		       (unsigned long long)st.fd_wakeups, (unsigned long long)st.callback_wakeups,
		       (unsigned long long)st.eventfds_created);
	}
	OSSL_PROVIDER_unload(kp);
	OSSL_PROVIDER_unload(dp);
	close(wake_fd);
	free(pairs);
	free(q);
	free(gone);
	return done == opt.n - abandoned && failed == 0 && late == 0 ? 0 : 1;
}
