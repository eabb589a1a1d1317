/*
 * provider_fork.c - driver of test_provider_fork.py (KEYWAY_FORK_DRIVER).
 *
 *   provider_fork PROVIDER_DIR KEY.ref.pem CERT.pem
 *
 * Signs in the parent (which starts the provider's I/O thread and opens a
 * keyserver connection), forks twice in a row, signs in each child and
 * again in the parent, and verifies every signature with the certificate's
 * public key. A child that used its parent's (absent) thread or connection
 * would time out. Prints one line per step; exit 0 when all succeed.
 */
#include <signal.h>
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
	pid_t pid = fork();
	int status = 0;

	if (pid == 0) {
		alarm(20); /* a hang is a failure, never a stuck test */
		int ok = sign_and_verify(who, 1) && sign_and_verify(who, 2);
		fflush(stdout);
		_exit(ok ? 0 : 1);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL %s exited with status %#x\n", who, status);
		return 0;
	}
	return 1;
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
