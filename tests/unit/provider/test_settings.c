/*
 * test_settings.c - the provider's settings: defaults, parsing, where each
 * value comes from (kw_provider_configure over KEYWAY_* over openssl.cnf),
 * the first error naming its source, and the public reader keyway ping
 * uses.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "keyway/err.h"
#include "keyway/provider_api.h"
#include "keyway/provider_settings.h"
#include "settings.h"

/* A fake openssl.cnf section: NULL-terminated key/value pairs. */
static const char *cnf_get(void *arg, const char *name)
{
	const char *const *kv = arg;
	for (; kv[0] != NULL; kv += 2)
		if (strcmp(kv[0], name) == 0)
			return kv[1];
	return NULL;
}

static void clear_env(void)
{
	static const char *const vars[] = {
	    "KEYWAY_SERVERS",     "KEYWAY_TIMEOUT_MS",
	    "KEYWAY_CONNECTIONS", "KEYWAY_POLLING",
	    "KEYWAY_CA",          "KEYWAY_MAX_INFLIGHT",
	    "KEYWAY_STATS_FILE",  "KEYWAY_SERVER_NAME",
	    "KEYWAY_CLIENT_KEY",  "KEYWAY_ALLOW_GROUP_READABLE_KEYS",
	    "KEYWAY_RSA_BATCH",   NULL,
	};
	for (int i = 0; vars[i] != NULL; i++)
		unsetenv(vars[i]);
}

static void test_defaults(void)
{
	struct kwp_settings s;

	CHECK_EQ(kwp_settings_load(&s, NULL, NULL), 0);
	CHECK(s.error == NULL);
	CHECK_EQ(s.nservers, 0);
	CHECK_EQ(s.timeout_ms, KWP_DEFAULT_TIMEOUT_MS);
	CHECK_EQ(s.attempt_timeout_ms, KWP_DEFAULT_ATTEMPT_TIMEOUT_MS);
	CHECK_EQ(s.connections, KWP_DEFAULT_CONNECTIONS);
	CHECK_EQ(s.max_inflight, KWP_DEFAULT_MAX_INFLIGHT);
	CHECK_EQ(s.polling, KWP_POLLING_INTERNAL);
	CHECK(s.stats_file == NULL && s.server_name == NULL && s.fallback == NULL);
	CHECK(s.rsa_batch); /* on: batches run where the CPU has the kernel */
	kwp_settings_cleanup(&s);
}

static void test_cnf_values(void)
{
	const char *kv[] = {"servers",    " unix:/run/a.sock , unix:/run/b.sock ",
	                    "timeout_ms", "750",
	                    "polling",    "external",
	                    "stats_file", "/tmp/s.%p",
	                    NULL};
	struct kwp_settings s;

	CHECK_EQ(kwp_settings_load(&s, cnf_get, kv), 0);
	CHECK(s.error == NULL);
	CHECK_EQ(s.nservers, 2);
	CHECK(s.nservers == 2 && strcmp(s.server_texts[1], "unix:/run/b.sock") == 0);
	CHECK_EQ(kwp_settings_need_tls(&s), 0);
	CHECK_EQ(s.timeout_ms, 750);
	CHECK_EQ(s.polling, KWP_POLLING_EXTERNAL);
	CHECK(s.stats_file != NULL && strcmp(s.stats_file, "/tmp/s.%p") == 0);
	kwp_settings_cleanup(&s);
}

/* load_error loads with kv and returns a copy of the first error (or NULL). */
static char *load_error(const char *const *kv)
{
	struct kwp_settings s;
	char *e = NULL;

	CHECK_EQ(kwp_settings_load(&s, cnf_get, (void *)kv), 0);
	if (s.error != NULL)
		e = strdup(s.error);
	kwp_settings_cleanup(&s);
	return e;
}

static void test_errors(void)
{
	const char *bad_num[] = {"timeout_ms", "12x", NULL};
	const char *zero[] = {"connections", "0", NULL};
	const char *polling[] = {"polling", "sometimes", NULL};
	const char *half_tls[] = {"client_cert", "/nonexistent/c.pem", NULL};
	const char *no_ca[] = {"servers", "127.0.0.1:2407", NULL};
	char *e;

	e = load_error(bad_num);
	CHECK(e && strcmp(e, "timeout_ms: '12x' is not a number from 1 to 3600000") == 0);
	free(e);
	e = load_error(zero);
	CHECK(e && strstr(e, "connections: '0' is not a number from 1 to 64") == e);
	free(e);
	e = load_error(polling);
	CHECK(e && strcmp(e, "polling: 'sometimes' is neither internal nor external") == 0);
	free(e);
	e = load_error(half_tls); /* the first problem wins: the unreadable file */
	CHECK(e && strncmp(e, "client_cert '/nonexistent/c.pem': cannot open", 45) == 0);
	free(e);
	e = load_error(no_ca);
	CHECK(e && strncmp(e, "ca is not set", 13) == 0);
	free(e);
}

/* rsa_batch: openssl.cnf, overridden by KEYWAY_RSA_BATCH, refused when not a boolean. */
static void test_rsa_batch(void)
{
	const char *off[] = {"rsa_batch", "off", NULL};
	const char *bad[] = {"rsa_batch", "sometimes", NULL};
	struct kwp_settings s;
	char *e;

	CHECK_EQ(kwp_settings_load(&s, cnf_get, off), 0);
	CHECK(s.error == NULL && !s.rsa_batch);
	kwp_settings_cleanup(&s);
	setenv("KEYWAY_RSA_BATCH", "1", 1);
	CHECK_EQ(kwp_settings_load(&s, cnf_get, off), 0);
	CHECK(s.error == NULL && s.rsa_batch);
	kwp_settings_cleanup(&s);
	clear_env();
	CHECK_EQ(kw_provider_configure("rsa-batch", "no"), 0);
	CHECK_EQ(kwp_settings_load(&s, NULL, NULL), 0);
	CHECK(s.error == NULL && !s.rsa_batch);
	kwp_settings_cleanup(&s);
	CHECK_EQ(kw_provider_configure("rsa-batch", NULL), 0);
	e = load_error(bad);
	CHECK(e && strcmp(e, "rsa_batch: 'sometimes' is neither on (yes, true, 1) nor off (no, "
	                     "false, 0)") == 0);
	free(e);
}

/* client_key unlocks the keyservers: refused when group- or other-readable, unless allowed. */
static void test_client_key_mode(void)
{
	char path[] = "/tmp/kw-settings-key-XXXXXX";
	int fd = mkstemp(path);
	CHECK(fd >= 0);
	CHECK(write(fd, "key\n", 4) == 4);
	close(fd);

	const char *kv[] = {"client_cert", path, "client_key", path, NULL};
	char *e = load_error(kv); /* mkstemp: 0600 */
	CHECK(e == NULL);
	free(e);
	CHECK_EQ(chmod(path, 0644), 0);
	e = load_error(kv);
	CHECK(e && strstr(e, path) && strstr(e, "readable by group or others (mode 0644)") &&
	      strstr(e, "chmod 600") && strstr(e, "allow_group_readable_keys"));
	free(e);
	const char *allowed[] = {
	    "client_cert", path, "client_key", path, "allow_group_readable_keys", "1", NULL};
	e = load_error(allowed);
	CHECK(e == NULL);
	free(e);
	/* The variable works as the openssl.cnf key does. */
	setenv("KEYWAY_ALLOW_GROUP_READABLE_KEYS", "yes", 1);
	e = load_error(kv);
	CHECK(e == NULL);
	free(e);
	setenv("KEYWAY_ALLOW_GROUP_READABLE_KEYS", "maybe", 1);
	e = load_error(kv);
	CHECK(e && strstr(e, "KEYWAY_ALLOW_GROUP_READABLE_KEYS: 'maybe'") == e);
	free(e);
	unsetenv("KEYWAY_ALLOW_GROUP_READABLE_KEYS");
	unlink(path);
}

static void test_precedence(void)
{
	const char *kv[] = {"timeout_ms", "100", "connections", "3", "max_inflight", "9", NULL};
	struct kwp_settings s;

	clear_env();
	/* openssl.cnf < KEYWAY_* < kw_provider_configure, each setting on its own. */
	setenv("KEYWAY_TIMEOUT_MS", "200", 1);
	setenv("KEYWAY_CONNECTIONS", "4", 1);
	CHECK_EQ(kw_provider_configure("timeout-ms", "300"), 0); /* '-' as '_' */
	CHECK_EQ(kwp_settings_load(&s, cnf_get, kv), 0);
	CHECK(s.error == NULL);
	CHECK_EQ(s.timeout_ms, 300); /* configured */
	CHECK_EQ(s.connections, 4);  /* the variable nobody overrode keeps working */
	CHECK_EQ(s.max_inflight, 9); /* openssl.cnf */
	kwp_settings_cleanup(&s);

	/* A configured value is named as its variable in messages, as when it was exported. */
	CHECK_EQ(kw_provider_configure("max_inflight", "lots"), 0);
	CHECK_EQ(kwp_settings_load(&s, cnf_get, kv), 0);
	CHECK(s.error &&
	      strcmp(s.error, "KEYWAY_MAX_INFLIGHT: 'lots' is not a number from 1 to 1000000") ==
	          0);
	kwp_settings_cleanup(&s);

	/* NULL drops a configured value: the variable, then openssl.cnf, decide again. */
	CHECK_EQ(kw_provider_configure("timeout_ms", NULL), 0);
	CHECK_EQ(kw_provider_configure("max-inflight", NULL), 0);
	CHECK_EQ(kwp_settings_load(&s, cnf_get, kv), 0);
	CHECK_EQ(s.timeout_ms, 200);
	CHECK_EQ(s.max_inflight, 9);
	kwp_settings_cleanup(&s);
	clear_env();

	CHECK_EQ(kw_provider_configure("servers", "unix:/run/k.sock"), 0);
	CHECK_EQ(kw_provider_configure("polling", "external"), 0);
	CHECK_EQ(kwp_settings_load(&s, NULL, NULL), 0);
	CHECK_EQ(s.nservers, 1);
	CHECK_EQ(s.polling, KWP_POLLING_EXTERNAL);
	kwp_settings_cleanup(&s);
	CHECK_EQ(kw_provider_configure("servers", NULL), 0);
	CHECK_EQ(kw_provider_configure("polling", NULL), 0);

	/* Only the provider's keys. */
	CHECK_EQ(kw_provider_configure("server", "x"), -EINVAL);
	CHECK_EQ(kw_provider_configure("servers_", "x"), -EINVAL);
	CHECK_EQ(kw_provider_configure("KEYWAY_SERVERS", "x"), -EINVAL);
	CHECK_EQ(kw_provider_configure("", "x"), -EINVAL);
	CHECK_EQ(kw_provider_configure(NULL, "x"), -EINVAL);
}

/* The public reader: a real openssl.cnf, the section the provider would use. */
static void test_reader(void)
{
	char path[] = "/tmp/kw_test_settings_XXXXXX";
	int fd = mkstemp(path);
	struct kw_provider_settings *ps = NULL;
	struct kw_keyless_config cfg;
	SSL_CTX *ctx = (SSL_CTX *)1;
	char err[256];

	CHECK(fd >= 0);
	if (fd < 0)
		return;
	FILE *f = fdopen(fd, "w");
	fputs("openssl_conf = init\n[init]\nproviders = provs\n[provs]\nkp = kp_sect\n"
	      "[kp_sect]\nservers = unix:/run/a.sock, unix:/run/b.sock\ntimeout_ms = 1234\n"
	      "connections = 7\n",
	      f);
	fclose(f);
	clear_env();

	CHECK_EQ(kw_provider_settings_read(path, "kp", &ps), 0);
	CHECK(ps != NULL && kw_provider_settings_error(ps) == NULL);
	if (ps != NULL) {
		CHECK_EQ(kw_provider_settings_keyless(ps, &cfg, &ctx, err, sizeof(err)), 0);
		CHECK(ctx == NULL); /* unix: keyservers need no TLS */
		CHECK_EQ(cfg.nservers, 2);
		CHECK(cfg.nservers == 2 && strcmp(cfg.names[0], "unix:/run/a.sock") == 0);
		CHECK_EQ(cfg.timeout_ms, 1234);
		CHECK_EQ(cfg.connections, 1); /* one each: a ping, not a pool */
		CHECK(cfg.fallback == NULL);
	}
	kw_provider_settings_free(ps);

	/* Another name: no section, no servers; a bad variable is the reader's error. */
	setenv("KEYWAY_TIMEOUT_MS", "-1", 1);
	CHECK_EQ(kw_provider_settings_read(path, "other", &ps), 0);
	CHECK(ps && kw_provider_settings_error(ps) &&
	      strncmp(kw_provider_settings_error(ps), "KEYWAY_TIMEOUT_MS: '-1'", 23) == 0);
	kw_provider_settings_free(ps);
	clear_env();

	/* TCP keyservers without a usable ca: TLS set-up fails, the keyservers are still named. */
	setenv("KEYWAY_SERVERS", "127.0.0.1:1", 1);
	setenv("KEYWAY_CA", path, 1); /* a file, but no certificate in it */
	CHECK_EQ(kw_provider_settings_read(path, "kp", &ps), 0);
	if (ps != NULL) {
		CHECK(kw_provider_settings_error(ps) == NULL);
		CHECK_EQ(kw_provider_settings_keyless(ps, &cfg, &ctx, err, sizeof(err)),
		         -KW_ECONFIG);
		CHECK(ctx == NULL);
		CHECK(strncmp(err, "ca: no usable PEM certificate", 29) == 0);
		CHECK_EQ(cfg.nservers, 1);
		CHECK(cfg.nservers == 1 && strcmp(cfg.names[0], "127.0.0.1:1") == 0);
	}
	kw_provider_settings_free(ps);
	kw_provider_settings_free(NULL);
	clear_env();
	unlink(path);
}

int main(void)
{
	clear_env();
	test_defaults();
	test_cnf_values();
	test_errors();
	test_client_key_mode();
	test_precedence();
	test_reader();
	test_rsa_batch();
	CHECK_DONE();
}
