/*
 * test_server.c - keywayd's server on a Unix socket: start-up errors that
 * name the option and the fix, the socket's mode and stale-socket rules, the
 * pid file, reload (published on success, the old keys kept on failure), and
 * a served request before drain, join and cleanup remove what it created.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <openssl/err.h>

#include "check.h"
#include "keygen.h"
#include "keyway/buf.h"
#include "keyway/err.h"
#include "keyway/protocol.h"
#include "server.h"

static char *dir;

static struct kwd_options options(void)
{
	static char keys[256], sock[256], pid[256];
	snprintf(keys, sizeof(keys), "%s", join(dir, "keys"));
	snprintf(sock, sizeof(sock), "%s", join(dir, "sock"));
	snprintf(pid, sizeof(pid), "%s", join(dir, "pid"));
	return (struct kwd_options){
	    .keys_dir = keys,
	    .unix_path = sock,
	    .pid_file = pid,
	    .workers = 1,
	    .idle_timeout_s = 30,
	    .drain_timeout_s = 5,
	    .max_inflight = 1024,
	};
}

/* init_fails expects kwd_server_init to fail with rc and an err starting with want. */
static void init_fails(const struct kwd_options *o, int rc, const char *want)
{
	struct kwd_server s;
	char err[1024] = "";
	CHECK_EQ(kwd_server_init(&s, o, err, sizeof(err)), rc);
	if (strncmp(err, want, strlen(want)) != 0) {
		fprintf(stderr, "err '%s', want it to start with '%s'\n", err, want);
		check_failures++;
	}
	CHECK(strstr(err, "fix") != NULL || strstr(err, "chmod") != NULL);
	kwd_server_cleanup(&s);
}

static void test_start_errors(void)
{
	struct kwd_options o = options();
	o.unix_mode = "abc";
	init_fails(&o, -KW_ECONFIG, "--unix-mode abc: not an octal permission mode");
	o = options();
	o.keys_dir = (char *)join(dir, "none");
	init_fails(&o, -KW_ECONFIG, "--keys ");
	o = options();
	o.unix_path = (char *)join(dir, "keys/k1.key"); /* exists, not a socket */
	init_fails(&o, -EEXIST, "--unix ");
	CHECK(access(join(dir, "keys/k1.key"), F_OK) == 0); /* left alone */
}

/* A socket file nobody listens on is stale: it is replaced. */
static void make_stale_socket(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_EQ(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
}

static int ping(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 3};
	struct kw_msg m = {.has_opcode = true, .opcode = KW_OP_PING};
	struct kw_buf b = KW_BUF_INIT;
	uint8_t frame[KW_PADDED_LEN];
	struct kw_header h;
	struct kw_msg r = {0};

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)), 0);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	CHECK_EQ(kw_msg_encode(&b, 5, &m, true), 0);
	CHECK_EQ(send(fd, kw_buf_head(&b), kw_buf_unread(&b), MSG_NOSIGNAL), KW_PADDED_LEN);
	kw_buf_cleanup(&b);
	CHECK_EQ(recv(fd, frame, sizeof(frame), MSG_WAITALL), sizeof(frame));
	close(fd);
	if (kw_header_parse(&h, frame, sizeof(frame)) < 0 ||
	    kw_msg_parse(&r, frame + KW_HEADER_LEN, h.length) < 0 || h.id != 5)
		return -1;
	return r.opcode;
}

static void test_life(EVP_PKEY *k2)
{
	struct kwd_options o = options();
	struct kwd_server s;
	char err[1024] = "";
	struct stat st;

	make_stale_socket(o.unix_path);
	o.unix_mode = "0600";
	int rc = kwd_server_init(&s, &o, err, sizeof(err));
	if (rc != 0)
		fprintf(stderr, "init: %s\n", err);
	CHECK_EQ(rc, 0);
	CHECK(lstat(o.unix_path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(s.gens.gen->seq, 1);
	CHECK_EQ(kwd_keystore_count(s.gens.gen->ks), 1);

	CHECK_EQ(kwd_server_write_pid(&s, err, sizeof(err)), 0);
	FILE *f = fopen(o.pid_file, "r");
	long pid = 0;
	CHECK(f != NULL && fscanf(f, "%ld", &pid) == 1);
	if (f != NULL)
		fclose(f);
	CHECK_EQ(pid, getpid());

	/* A reload that succeeds is published; one that fails keeps what is served. */
	CHECK_EQ(write_key(join(dir, "keys/k2.key"), k2, FMT_DER, 0600), 0);
	CHECK_EQ(kwd_server_reload(&s), 0);
	CHECK_EQ(s.gens.gen->seq, 2);
	CHECK_EQ(kwd_gen_slot_seq(&s.gens), 2);
	CHECK_EQ(kwd_keystore_count(s.gens.gen->ks), 2);
	CHECK_EQ(chmod(join(dir, "keys/k2.key"), 0644), 0);
	CHECK(kwd_server_reload(&s) < 0);
	CHECK_EQ(s.gens.gen->seq, 2);
	CHECK_EQ(kwd_keystore_count(s.gens.gen->ks), 2);

	CHECK_EQ(kwd_server_start(&s, err, sizeof(err)), 0);
	CHECK_EQ(ping(o.unix_path), KW_OP_PONG);
	kwd_server_drain(&s);
	CHECK(access(o.unix_path, F_OK) != 0); /* new clients find no socket */
	kwd_server_join(&s);
	kwd_server_cleanup(&s);
	CHECK(access(o.pid_file, F_OK) != 0);
}

int main(void)
{
	EVP_PKEY *k1 = gen_ec("P-256"), *k2 = gen_named("ED25519");
	dir = make_tmpdir();
	CHECK(dir != NULL && k1 != NULL && k2 != NULL);
	CHECK_EQ(mkdir(join(dir, "keys"), 0700), 0);
	CHECK_EQ(write_key(join(dir, "keys/k1.key"), k1, FMT_PKCS8_PEM, 0600), 0);

	test_start_errors();
	test_life(k2);

	EVP_PKEY_free(k1);
	EVP_PKEY_free(k2);
	rm_tree(dir);
	CHECK_DONE();
}
