/* server.c - keywayd's listeners, generations, reload and shutdown (see server.h). */
#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/log.h"
#include "keyway/protocol.h"
#include "keyway/tls.h"
#include "trust.h"
#include "worker.h"

#define LISTEN_BACKLOG 1024

/* ---- generations ---- */

/*
 * load_tls_key reads --tls-key with the keystore's rule (private to its owner
 * unless allowed). The mode is checked on the descriptor the key is then read
 * from, so the file cannot be swapped between the check and the read, and a
 * FIFO or device cannot hang start-up.
 */
static int load_tls_key(const struct kwd_options *opt, EVP_PKEY **out, char *err, size_t errlen)
{
	struct kw_keyfile_options ko = {.allow_group_readable = opt->allow_group_readable,
	                                .mode_fix = " or pass --allow-group-readable-keys"};
	struct kw_keyfile f = {0};
	char why[512];
	int rc = kw_keyfile_read(AT_FDCWD, opt->tls_key, opt->tls_key, &ko, &f, why, sizeof(why));

	if (rc == 1) {
		snprintf(why, sizeof(why), "%s: not a regular file", opt->tls_key);
		rc = -KW_ECONFIG;
	}
	if (rc == 0)
		rc = kw_keyfile_parse(&f, NULL, out, why, sizeof(why));
	kw_keyfile_cleanup(&f);
	if (rc < 0)
		snprintf(err, errlen,
		         "--tls-key %s; fix: give the server's unencrypted PEM private key", why);
	return rc;
}

/*
 * server_ctx builds the listeners' context: --tls-cert with the key
 * load_tls_key read, --client-ca with the CRLs of --client-crl, and no
 * session resumption (a revoked client must not get back in on an old session).
 */
static SSL_CTX *server_ctx(const struct kwd_options *opt, EVP_PKEY *key,
                           uint8_t trust[KWD_TRUST_DIGEST_LEN], char *err, size_t errlen)
{
	char why[768];
	SSL_CTX *ctx = kw_tls_server_ctx(opt->tls_cert, NULL, opt->client_ca, why, sizeof(why));
	if (ctx != NULL && kwd_trust_no_resumption(ctx) < 0) {
		SSL_CTX_free(ctx);
		snprintf(err, errlen, "the TLS library refuses to turn session resumption off");
		return NULL;
	}
	if (ctx != NULL &&
	    kwd_trust_apply(ctx, opt->client_ca, opt->client_crl, trust, err, errlen) < 0) {
		SSL_CTX_free(ctx);
		return NULL;
	}

	if (ctx != NULL &&
	    (SSL_CTX_use_PrivateKey(ctx, key) != 1 || SSL_CTX_check_private_key(ctx) != 1)) {
		char tls[256];
		kw_tls_err_string(tls, sizeof(tls));
		snprintf(why, sizeof(why),
		         "TLS private key does not match the certificate in '%s'%s%s",
		         opt->tls_cert, tls[0] ? ": " : "", tls);
		SSL_CTX_free(ctx);
		ctx = NULL;
	}
	if (ctx == NULL)
		snprintf(err, errlen,
		         "%s; fix: --tls-cert must be a PEM certificate chain, --tls-key its "
		         "unencrypted PEM key, --client-ca the PEM CA of the clients",
		         why);
	return ctx;
}

/* Token operations waiting for a device thread, at most (then answered 0x08 at once). */
#define KWD_DEVICE_QUEUE 16384

/* load_tokens reads the keys of the --pkcs11 URIs (at start-up and on every reload). */
static int load_tokens(const struct kwd_options *opt, struct kwd_p11_set **out, char *err,
                       size_t errlen)
{
	size_t n = 0;
	*out = NULL;
	while (opt->pkcs11 != NULL && opt->pkcs11[n] != NULL)
		n++;
	if (n == 0)
		return 0;
	struct kwd_p11_options po = {
	    .module = opt->pkcs11_module,
	    .uris = (const char *const *)opt->pkcs11,
	    .nuris = n,
	    .allow_group_readable = opt->allow_group_readable,
	};
	return kwd_p11_load(&po, out, err, errlen);
}

static int build_gen(struct kwd_server *s, uint64_t seq, struct kwd_gen **out, char *err,
                     size_t errlen)
{
	const struct kwd_options *opt = s->opt;
	struct kwd_keystore_options ko = {.allow_group_readable = opt->allow_group_readable};
	struct kwd_keystore *ks = NULL;
	struct kwd_p11_set *p11 = NULL;
	struct kwd_acl *acl = NULL;
	SSL_CTX *ctx = NULL;
	uint8_t trust[KWD_TRUST_DIGEST_LEN] = {0};

	struct stat st;
	const char *bad = NULL;
	if (opt->keys_dir != NULL && stat(opt->keys_dir, &st) != 0)
		bad = strerror(errno);
	else if (opt->keys_dir != NULL && !S_ISDIR(st.st_mode))
		bad = "not a directory";
	if (bad != NULL) {
		snprintf(err, errlen,
		         "--keys %s: %s; fix: give the directory holding the *.key files",
		         opt->keys_dir, bad);
		return -KW_ECONFIG;
	}
	int rc = load_tokens(opt, &p11, err, errlen);
	if (rc < 0)
		return rc;
	ko.p11 = p11;
	ko.p11_device = &s->p11dev.dev;
	rc = kwd_keystore_load(opt->keys_dir, &ko, &ks, err, errlen);
	kwd_p11_set_unref(p11); /* the keystore holds its own reference */
	if (rc < 0)
		return rc;
	if (s->has_tcp) {
		EVP_PKEY *key = NULL;
		if ((rc = load_tls_key(opt, &key, err, errlen)) < 0)
			goto err;
		ctx = server_ctx(opt, key, trust, err, errlen);
		EVP_PKEY_free(key);
		if (ctx == NULL) {
			rc = -KW_ECONFIG;
			goto err;
		}
	}
	if (opt->acl != NULL && (rc = kwd_acl_load(opt->acl, &acl, err, errlen)) < 0)
		goto err;
	if ((rc = kwd_gen_new(out, seq, ks, ctx)) < 0) {
		snprintf(err, errlen, "out of memory");
		goto err;
	}
	(*out)->acl = acl;
	memcpy((*out)->trust, trust, sizeof(trust));
	return 0;
err:
	kwd_acl_free(acl);
	SSL_CTX_free(ctx);
	kwd_keystore_free(ks);
	return rc;
}

/* ---- listeners ---- */

static int tcp_fail(char *err, size_t errlen, const char *name, int rc)
{
	snprintf(err, errlen, "cannot listen on %s: %s; fix: %s", name, strerror(-rc),
	         rc == -EADDRINUSE ? "stop the server using that port or choose another --listen"
	         : rc == -EADDRNOTAVAIL ? "use an address of this machine in --listen"
	         : rc == -EACCES        ? "use a port above 1023 or run with CAP_NET_BIND_SERVICE"
	                                : "check --listen");
	return rc;
}

static int open_tcp(struct kwd_server *s, char *err, size_t errlen)
{
	char why[256], name[300];
	if (kw_addr_parse(&s->tcp_addr, s->opt->listen, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "--listen %s: %s; fix: use ADDR:PORT, e.g. 127.0.0.1:2407",
		         s->opt->listen, why);
		return -KW_ECONFIG;
	}
	if (s->tcp_addr.is_unix) {
		snprintf(err, errlen,
		         "--listen %s: a TCP address is needed; use --unix for a socket",
		         s->opt->listen);
		return -KW_ECONFIG;
	}
	kw_addr_format(&s->tcp_addr, name, sizeof(name));
	int port = kw_addr_port(&s->tcp_addr);
	if (port != 0) {
		/* SO_REUSEPORT would silently share the port with another server of
		 * this user: make sure nobody listens there first. */
		int fd = kw_listen_tcp(&s->tcp_addr, false, 1);
		if (fd < 0)
			return tcp_fail(err, errlen, name, fd);
		close(fd);
	}
	s->tcp_fds = malloc(s->nworkers * sizeof(int));
	if (s->tcp_fds == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < s->nworkers; i++)
		s->tcp_fds[i] = -1;
	for (unsigned i = 0; i < s->nworkers; i++) {
		/* Port 0: the first listener pins the kernel's port in tcp_addr, so
		 * every other worker joins it. */
		int fd = kw_listen_tcp_pin(&s->tcp_addr, true, LISTEN_BACKLOG);
		if (fd < 0)
			return tcp_fail(err, errlen, name, fd);
		s->tcp_fds[i] = fd;
		if (i == 0 && port == 0)
			kw_addr_format(&s->tcp_addr, name, sizeof(name));
	}
	return 0;
}

static int parse_group(const char *name, gid_t *out)
{
	char *end;
	unsigned long v = strtoul(name, &end, 10);
	if (*name != '\0' && *end == '\0') {
		*out = (gid_t)v;
		return 0;
	}
	struct group gr, *res = NULL;
	char buf[4096];
	if (getgrnam_r(name, &gr, buf, sizeof(buf), &res) != 0 || res == NULL)
		return -ENOENT;
	*out = gr.gr_gid;
	return 0;
}

static int unix_fail(char *err, size_t errlen, const char *path, int rc)
{
	snprintf(err, errlen, "--unix %s: %s; fix: check the directory exists and is writable",
	         path, strerror(-rc));
	return rc;
}

/*
 * clear_unix_path makes way for a new socket at sa's path: nothing there, or
 * a stale socket nobody answers on, which is removed. 0 or -errno with err.
 */
static int clear_unix_path(const struct sockaddr_un *sa, char *err, size_t errlen)
{
	const char *path = sa->sun_path;
	struct stat st;
	if (lstat(path, &st) != 0)
		return 0;
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen,
		         "--unix %s: exists and is not a socket; fix: remove it or choose "
		         "another path",
		         path);
		return -EEXIST;
	}
	/* Remove a stale socket only if nothing answers on it. */
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return unix_fail(err, errlen, path, -errno);
	int r = connect(probe, (const struct sockaddr *)sa, sizeof(*sa));
	int e = errno;
	close(probe);
	if (r == 0 || e == EAGAIN || e == EINPROGRESS) {
		snprintf(err, errlen,
		         "--unix %s: already in use by a running server; fix: stop it or "
		         "choose another path",
		         path);
		return -EADDRINUSE;
	}
	if (e == ECONNREFUSED) {
		if (unlink(path) != 0 && errno != ENOENT)
			return unix_fail(err, errlen, path, -errno);
		kw_info("removed stale socket %s", path);
	} else if (e != ENOENT) {
		return unix_fail(err, errlen, path, -e);
	}
	return 0;
}

static int open_unix(struct kwd_server *s, char *err, size_t errlen)
{
	const char *path = s->opt->unix_path;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	gid_t gid = (gid_t)-1;
	int rc;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, errlen,
		         "--unix %s: path longer than %zu bytes; fix: use a shorter path", path,
		         sizeof(sa.sun_path) - 1);
		return -ENAMETOOLONG;
	}
	memcpy(sa.sun_path, path, strlen(path) + 1);
	if (s->opt->unix_group != NULL && parse_group(s->opt->unix_group, &gid) < 0) {
		snprintf(err, errlen, "--unix-group %s: no such group; fix: name an existing group",
		         s->opt->unix_group);
		return -KW_ECONFIG;
	}

	if ((rc = clear_unix_path(&sa, err, errlen)) < 0)
		return rc;

	s->unix_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (s->unix_fd < 0)
		goto sys;
	/* Created owner-only (umask around bind; still single-threaded here), then
	 * given its group, then opened up to --unix-mode. */
	mode_t old = umask(0077);
	int r = bind(s->unix_fd, (struct sockaddr *)&sa, sizeof(sa));
	int e = errno;
	umask(old);
	if (r != 0) {
		errno = e;
		goto sys;
	}
	s->unix_owned = true;
	if (gid != (gid_t)-1 && chown(path, (uid_t)-1, gid) != 0) {
		rc = -errno;
		snprintf(err, errlen,
		         "--unix-group %s: cannot give %s that group: %s; fix: run keywayd as a "
		         "member of the group",
		         s->opt->unix_group, path, strerror(-rc));
		return rc;
	}
	if (chmod(path, s->unix_mode) != 0 || listen(s->unix_fd, LISTEN_BACKLOG) != 0)
		goto sys;
	return 0;
sys:
	return unix_fail(err, errlen, path, -errno);
}

/* ---- life cycle ---- */

int kwd_server_init(struct kwd_server *s, const struct kwd_options *opt, char *err, size_t errlen)
{
	memset(s, 0, sizeof(*s));
	s->opt = opt;
	s->unix_fd = -1;
	kwd_gen_slot_init(&s->gens);
	s->nworkers = opt->workers;
	s->has_tcp = opt->listen != NULL;
	s->unix_mode = 0660;
	if (opt->unix_mode != NULL) {
		char *end;
		unsigned long m = strtoul(opt->unix_mode, &end, 8);
		if (*opt->unix_mode == '\0' || *end != '\0' || m > 0777) {
			snprintf(err, errlen,
			         "--unix-mode %s: not an octal permission mode; fix: use e.g. 0660",
			         opt->unix_mode);
			return -KW_ECONFIG;
		}
		s->unix_mode = (unsigned)m;
	}
	/* Anyone on the machine could then use the keys: only when asked in so many words. */
	if (opt->unix_path != NULL && (s->unix_mode & 0002) && !opt->allow_world_socket) {
		snprintf(err, errlen,
		         "--unix-mode %04o lets every local user connect (o+w); fix: use 0660 "
		         "with --unix-group, or pass --allow-world-socket (and --acl uid: rules)",
		         s->unix_mode);
		return -KW_ECONFIG;
	}
	if (opt->audit_log != NULL && kwd_audit_open(&s->audit, opt->audit_log, err, errlen) < 0)
		return -KW_ECONFIG;

	struct kwd_gen *g = NULL;
	int rc = kwd_metrics_new(&s->metrics);
	if (rc < 0) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	if (opt->pkcs11 != NULL && opt->pkcs11[0] != NULL) {
		if ((rc = kwd_devpool_new(opt->pkcs11_threads, KWD_DEVICE_QUEUE, &s->devpool)) <
		    0) {
			snprintf(err, errlen, "cannot start the PKCS#11 device threads: %s",
			         kw_strerror(rc));
			return rc;
		}
		kwd_p11_device_init(&s->p11dev, s->devpool);
		kwd_metrics_set_devpool(s->metrics, s->devpool);
	}
	if ((rc = build_gen(s, 1, &g, err, errlen)) < 0)
		return rc;
	kwd_gen_slot_publish(&s->gens, g);
	kwd_metrics_set_keys(s->metrics, kwd_keystore_count(g->ks));

	if (s->has_tcp && (rc = open_tcp(s, err, errlen)) < 0)
		return rc;
	if (opt->unix_path != NULL && (rc = open_unix(s, err, errlen)) < 0)
		return rc;
	return 0;
}

int kwd_server_start(struct kwd_server *s, char *err, size_t errlen)
{
	s->workers = calloc(s->nworkers, sizeof(*s->workers));
	if (s->workers == NULL)
		return -ENOMEM;
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct kwd_worker_config cfg = {
		    .id = i,
		    .tcp_fd = s->tcp_fds != NULL ? s->tcp_fds[i] : -1,
		    .unix_fd = s->unix_fd,
		    .gens = &s->gens,
		    .out_bound = (size_t)s->opt->max_inflight * KW_PADDED_LEN,
		    .idle_ns = (uint64_t)s->opt->idle_timeout_s * 1000000000u,
		    .handshake_ns = s->opt->handshake_ns,
		    .max_conns = s->opt->max_connections,
		    .nconns = &s->nconns,
		    .drain_ms = (uint64_t)s->opt->drain_timeout_s * 1000u,
		    .audit = s->audit,
		};
		/* The worker owns its TCP listener from here on. */
		if (s->tcp_fds != NULL)
			s->tcp_fds[i] = -1;
		int rc = kwd_worker_new(&s->workers[i], &cfg);
		if (rc == 0)
			rc = kwd_metrics_add_worker(s->metrics, kwd_worker_metrics(s->workers[i]));
		if (rc < 0) {
			snprintf(err, errlen, "cannot set up worker %u: %s", i, kw_strerror(rc));
			return rc;
		}
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		int rc = kwd_worker_start(s->workers[i]);
		if (rc < 0) {
			snprintf(err, errlen, "cannot start worker %u: %s", i, kw_strerror(rc));
			return rc;
		}
	}
	return 0;
}

int kwd_server_start_audit(struct kwd_server *s, struct kw_loop *loop)
{
	return s->audit != NULL ? kwd_audit_start(s->audit, loop) : 0;
}

int kwd_server_write_pid(struct kwd_server *s, char *err, size_t errlen)
{
	const char *path = s->opt->pid_file;
	char tmp[4096];
	if (path == NULL)
		return 0;
	/* Written whole then renamed, so a reader never sees an empty file. */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp)) {
		snprintf(err, errlen, "--pid-file %s: path too long", path);
		return -ENAMETOOLONG;
	}
	int rc = 0;
	/* A fresh file, never through a symlink planted at the predictable temporary
	 * path: a stale one (an earlier crash) is removed, then O_EXCL | O_NOFOLLOW. */
	if (unlink(tmp) < 0 && errno != ENOENT)
		goto sys;
	int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		goto sys;
	char line[32];
	int n = snprintf(line, sizeof(line), "%ld\n", (long)getpid());
	if (write(fd, line, (size_t)n) != n) {
		rc = errno ? -errno : -EIO;
		close(fd);
		unlink(tmp);
		goto out;
	}
	close(fd);
	if (rename(tmp, path) != 0) {
		rc = -errno;
		unlink(tmp);
		goto out;
	}
	s->pid_written = true;
	return 0;
sys:
	rc = -errno;
out:
	snprintf(err, errlen, "--pid-file %s: %s; fix: choose a writable location", path,
	         strerror(-rc));
	return rc;
}

int kwd_server_reload(struct kwd_server *s)
{
	char err[1024];
	struct kwd_gen *g = NULL;
	/* Only this thread replaces s->gens.gen, so reading it unlocked here is fine. */
	if (s->audit != NULL)
		(void)kwd_audit_reopen(s->audit); /* after log rotation; failures are logged */
	int rc = build_gen(s, s->gens.gen->seq + 1, &g, err, sizeof(err));
	if (rc < 0) {
		kw_error("reload failed, still serving the previous keys, TLS files%s: %s",
		         s->opt->acl != NULL ? " and ACL rules" : "", err);
		kwd_metrics_reload(s->metrics, 0);
		return rc;
	}
	kwd_gen_slot_publish(&s->gens, g);

	size_t n = kwd_keystore_count(g->ks);
	kwd_metrics_set_keys(s->metrics, n);
	kwd_metrics_reload(s->metrics, 1);
	char acl[64] = "";
	if (g->acl != NULL)
		snprintf(acl, sizeof(acl), ", %zu ACL rule%s", kwd_acl_count(g->acl),
		         kwd_acl_count(g->acl) == 1 ? "" : "s");
	kw_info("reloaded: %zu key%s%s%s%s", n, n == 1 ? "" : "s",
	        s->has_tcp ? ", TLS certificate, key and client CA" : "",
	        s->opt->client_crl != NULL ? " and CRLs" : "", acl);
	/* Idle workers let go of the old keys now rather than at their next request. */
	for (unsigned i = 0; s->workers != NULL && i < s->nworkers; i++)
		if (s->workers[i] != NULL)
			kwd_worker_wake(s->workers[i]);
	return 0;
}

static void unlink_socket(struct kwd_server *s)
{
	if (s->unix_owned && unlink(s->opt->unix_path) != 0 && errno != ENOENT)
		kw_warn("cannot remove %s: %s", s->opt->unix_path, strerror(errno));
	s->unix_owned = false;
}

void kwd_server_drain(struct kwd_server *s)
{
	/* New clients find no socket; the fd itself stays open until the workers
	 * have let go of it (closing a watched fd could unwatch a reused number). */
	unlink_socket(s);
	for (unsigned i = 0; s->workers != NULL && i < s->nworkers; i++)
		if (s->workers[i] != NULL)
			kwd_worker_drain(s->workers[i]);
}

void kwd_server_join(struct kwd_server *s)
{
	for (unsigned i = 0; s->workers != NULL && i < s->nworkers; i++)
		if (s->workers[i] != NULL)
			kwd_worker_join(s->workers[i]);
}

void kwd_server_cleanup(struct kwd_server *s)
{
	if (s->workers != NULL) {
		kwd_server_drain(s);
		kwd_server_join(s);
		for (unsigned i = 0; i < s->nworkers; i++)
			kwd_worker_free(s->workers[i]);
		free(s->workers);
		s->workers = NULL;
	}
	for (unsigned i = 0; s->tcp_fds != NULL && i < s->nworkers; i++)
		if (s->tcp_fds[i] >= 0)
			close(s->tcp_fds[i]);
	free(s->tcp_fds);
	s->tcp_fds = NULL;
	if (s->unix_fd >= 0)
		close(s->unix_fd);
	s->unix_fd = -1;
	unlink_socket(s);
	if (s->pid_written && unlink(s->opt->pid_file) != 0 && errno != ENOENT)
		kw_warn("cannot remove %s: %s", s->opt->pid_file, strerror(errno));
	s->pid_written = false;
	kwd_metrics_free(s->metrics);
	s->metrics = NULL;
	kwd_audit_free(s->audit); /* after the workers: their last counts are written */
	s->audit = NULL;
	/* After the workers: their executors waited for every device job. */
	kwd_devpool_free(s->devpool);
	s->devpool = NULL;
	kwd_gen_slot_cleanup(&s->gens);
	kwd_p11_wait_teardowns(); /* token sets released by the generations */
}
