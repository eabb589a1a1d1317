/*
 * provider_fork.c - driver of test_provider_fork.py (KEYWAY_FORK_DRIVER).
 *
 *   provider_fork PROVIDER_DIR KEY.ref.pem CERT.pem
 *
 * Signs in the parent (which starts the provider's I/O thread and opens a
 * keyserver connection), forks twice in a row, signs in each child and
 * again in the parent, and verifies every signature with the certificate's
 * public key. A child that used its parent's (absent) thread or connection
 * would time out. Each child must also have closed, before signing, every
 * descriptor of the parent's provider I/O (epoll, eventfd, timerfd,
 * keyserver sockets: the parent's list is taken just before fork), and the
 * parent must still use the keyserver connection it had: a child that shut
 * it down (close_notify) would have made the keyserver close it. Prints one
 * line per step; exit 0 when all succeed.
 */
#include <dirent.h>
#include <signal.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509.h>

static EVP_PKEY *key, *pub;

#define MAX_FDS 256

/* The descriptors provider I/O opens, each as its number and its /proc link target. */
struct fdset {
	int n;
	int fd[MAX_FDS];
	char target[MAX_FDS][64];
};

static int is_provider_io(const char *target)
{
	return strcmp(target, "anon_inode:[eventpoll]") == 0 ||
	       strcmp(target, "anon_inode:[eventfd]") == 0 ||
	       strcmp(target, "anon_inode:[timerfd]") == 0 || strncmp(target, "socket:[", 8) == 0;
}

/* list_io lists this process's epoll, eventfd, timerfd and socket descriptors. */
static void list_io(struct fdset *s)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;

	s->n = 0;
	while (d != NULL && (e = readdir(d)) != NULL && s->n < MAX_FDS) {
		char path[300], target[64];
		ssize_t len;
		int fd = atoi(e->d_name);

		if (e->d_name[0] == '.' || fd == dirfd(d))
			continue;
		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		if ((len = readlink(path, target, sizeof(target) - 1)) <= 0)
			continue;
		target[len] = '\0';
		if (!is_provider_io(target))
			continue;
		s->fd[s->n] = fd;
		snprintf(s->target[s->n], sizeof(s->target[0]), "%s", target);
		s->n++;
	}
	if (d != NULL)
		closedir(d);
}

static int count_sockets(const struct fdset *s)
{
	int n = 0;
	for (int i = 0; i < s->n; i++)
		n += strncmp(s->target[i], "socket:[", 8) == 0;
	return n;
}

/* inherited counts the entries of parent still open in child as the same object. */
static int inherited(const struct fdset *parent, const struct fdset *child, const char *who)
{
	int n = 0;
	for (int i = 0; i < parent->n; i++)
		for (int j = 0; j < child->n; j++)
			if (parent->fd[i] == child->fd[j] &&
			    strcmp(parent->target[i], child->target[j]) == 0) {
				printf("     %s still holds fd %d -> %s\n", who, child->fd[j],
				       child->target[j]);
				n++;
			}
	return n;
}

/* still_connected: does now hold one of the keyserver sockets before held? */
static int still_connected(const struct fdset *before, const struct fdset *now)
{
	for (int i = 0; i < before->n; i++)
		for (int j = 0; j < now->n; j++)
			if (strncmp(before->target[i], "socket:[", 8) == 0 &&
			    before->fd[i] == now->fd[j] &&
			    strcmp(before->target[i], now->target[j]) == 0)
				return 1;
	return 0;
}

static int sign_and_verify(const char *who, int round)
{
	unsigned char msg[64], sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *m = EVP_MD_CTX_new(), *v = EVP_MD_CTX_new();
	int ok;

	snprintf((char *)msg, sizeof(msg), "%s round %d", who, round);
	ok = m && v && EVP_DigestSignInit_ex(m, NULL, "SHA256", NULL, NULL, key, NULL) == 1 &&
	     EVP_DigestSign(m, sig, &siglen, msg, strlen((char *)msg)) == 1 &&
	     EVP_DigestVerifyInit_ex(v, NULL, "SHA256", NULL, NULL, pub, NULL) == 1 &&
	     EVP_DigestVerify(v, sig, siglen, msg, strlen((char *)msg)) == 1;
	printf("%s %s signs (round %d)\n", ok ? "ok  " : "FAIL", who, round);
	if (!ok)
		ERR_print_errors_fp(stdout);
	fflush(stdout);
	EVP_MD_CTX_free(m);
	EVP_MD_CTX_free(v);
	return ok;
}

static int child(const char *who)
{
	struct fdset parent_io, child_io;
	int status = 0;

	list_io(&parent_io);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20); /* a hang is a failure, never a stuck test */
		list_io(&child_io);
		int left = inherited(&parent_io, &child_io, who);
		int closed = left == 0 && parent_io.n >= 2 && count_sockets(&parent_io) >= 1;
		printf("%s %s holds none of the parent's %d provider descriptors (%d sockets)\n",
		       closed ? "ok  " : "FAIL", who, parent_io.n, count_sockets(&parent_io));
		fflush(stdout);
		int ok = closed && sign_and_verify(who, 1) && sign_and_verify(who, 2);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL %s exited with status %#x\n", who, status);
		return 0;
	}
	list_io(&child_io); /* the parent's, now */
	int kept = still_connected(&parent_io, &child_io);
	printf("%s parent keeps its keyserver connection after the %s exits\n",
	       kept ? "ok  " : "FAIL", who);
	return kept;
}

int main(int argc, char **argv)
{
	FILE *f;
	X509 *cert;
	int ok = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: provider_fork PROVIDER_DIR KEY.ref.pem CERT.pem\n");
		return 2;
	}
	OSSL_PROVIDER_set_default_search_path(NULL, argv[1]);
	if (!OSSL_PROVIDER_load(NULL, "default") || !OSSL_PROVIDER_load(NULL, "keyway")) {
		ERR_print_errors_fp(stdout);
		return 1;
	}
	if ((f = fopen(argv[2], "r")) == NULL)
		return 1;
	key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
	fclose(f);
	if ((f = fopen(argv[3], "r")) == NULL)
		return 1;
	cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	pub = cert ? X509_get_pubkey(cert) : NULL;
	if (key == NULL || pub == NULL) {
		printf("FAIL cannot load the key or certificate\n");
		ERR_print_errors_fp(stdout);
		return 1;
	}
	ok &= sign_and_verify("parent", 1);
	ok &= child("first child");
	ok &= sign_and_verify("parent", 2);
	ok &= child("second child");
	ok &= sign_and_verify("parent", 3);
	EVP_PKEY_free(key);
	EVP_PKEY_free(pub);
	X509_free(cert);
	return ok ? 0 : 1;
}
