/*
 * keys.c - what --key names, made ready for handshakes.
 *
 * A local PEM key stays a plain key for --backend inline: the no-offload
 * baseline pays nothing for Keyway. For --backend threads it is wrapped as a
 * keyway key, so the built-in provider turns each signature into a kw_op
 * on the worker's crypto threads -- the same path a keyserver-held key
 * takes. A keyway: URI or KEYWAY KEY reference PEM names a key held by
 * keyservers; the provider loads it (public half only, no round trip) and
 * each worker's keyless backend answers it.
 *
 * The provider is the program's own code (OSSL_PROVIDER_add_builtin) with
 * polling = external, so every worker owns its keyserver connections in its
 * own loop. Its settings come from the proxy's flags and --config keys
 * (which, spelled with '_' or '-', are the provider's openssl.cnf keys),
 * passed to it with kw_provider_configure before it is loaded: a flag
 * overrides the KEYWAY_* variable, which keeps overriding openssl.cnf.
 */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/loop.h"
#include "keyway/provider_api.h"
#include "keyway/tls.h"

enum kpx_key_kind kpx_key_kind(const char *key)
{
	char line[128];
	enum kpx_key_kind kind = KPX_KEY_LOCAL;

	if (strncmp(key, "keyway:", 7) == 0)
		return KPX_KEY_KEYWAY;
	FILE *f = fopen(key, "r");
	if (f == NULL)
		return KPX_KEY_LOCAL; /* the load reports the error */
	/* A reference PEM holds a KEYWAY KEY block (the provider's decoder label). */
	while (fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, "-----BEGIN KEYWAY KEY-----", 26) == 0) {
			kind = KPX_KEY_KEYWAY;
			break;
		}
	fclose(f);
	return kind;
}

static void mode_error(const char *what, const char *path, mode_t mode, char *err, size_t errlen)
{
	snprintf(err, errlen,
	         "%s %s: private key readable by group or others (mode %04o); fix: chmod 600 %s, "
	         "or pass --allow-group-readable-keys",
	         what, path, (unsigned)(mode & 07777), path);
}

/* check_mode: 0 if path (when it opens) is private to its owner, else -KW_ECONFIG. */
static int check_mode(const char *what, const char *path, char *err, size_t errlen)
{
	struct stat st;
	/* The descriptor is checked, not the name; O_NONBLOCK: a FIFO must not hang start-up. */
	int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return 0; /* the load reports a file that cannot be opened */
	int rc = fstat(fd, &st) == 0 && (st.st_mode & 077) != 0 ? -KW_ECONFIG : 0;
	close(fd);
	if (rc < 0)
		mode_error(what, path, st.st_mode, err, errlen);
	return rc;
}

int kpx_check_key_modes(const struct kpx_options *o, char *err, size_t errlen)
{
	if (o->allow_group_readable_keys)
		return 0;
	for (size_t i = 0; o->keys != NULL && o->keys[i] != NULL; i++)
		if (kpx_key_kind(o->keys[i]) == KPX_KEY_LOCAL &&
		    check_mode("--key", o->keys[i], err, errlen) < 0)
			return -KW_ECONFIG;
	const char *ck = o->keyless.client_key;
	const char *what = "--client-key";
	if (ck == NULL) {
		ck = getenv("KEYWAY_CLIENT_KEY");
		what = "KEYWAY_CLIENT_KEY";
	}
	if (ck != NULL && *ck != '\0' && check_mode(what, ck, err, errlen) < 0)
		return -KW_ECONFIG;
	return 0;
}

/*
 * set_err says what failed on which file and why in plain words, with the
 * fix; OpenSSL's own reason strings only reach the debug log.
 */
static void set_err(char *err, size_t errlen, const char *what, const char *file)
{
	char detail[512];
	kw_tls_err_explain(detail, sizeof(detail), "private key");
	snprintf(err, errlen, "%s %s%s%s", what, file, file[0] ? ": " : "", detail);
}

static int export_setting(const char *name, const char *text)
{
	return text == NULL || kw_provider_configure(name, text) == 0 ? 0 : -KW_ECONFIG;
}

static int export_uint(const char *name, unsigned v)
{
	char text[16];
	if (v == 0)
		return 0; /* not given: the environment or openssl.cnf decides */
	snprintf(text, sizeof(text), "%u", v);
	return export_setting(name, text);
}

/*
 * name_flags rewrites the provider's names for a file setting (its KEYWAY_*
 * variable or openssl.cnf key) in why to the flag, when that flag gave it:
 * the operator typed --ca, not KEYWAY_CA.
 */
static void name_flags(const struct kpx_keyless_opts *k, char *why, size_t len)
{
	const struct {
		const char *given, *var, *key, *flag;
	} map[] = {
	    {k->client_cert, "KEYWAY_CLIENT_CERT", "client_cert", "--client-cert"},
	    {k->client_key, "KEYWAY_CLIENT_KEY", "client_key", "--client-key"},
	    {k->ca, "KEYWAY_CA", "ca", "--ca"},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
		if (map[i].given == NULL)
			continue;
		for (int pass = 0; pass < 2; pass++) {
			char pat[32], *at;
			snprintf(pat, sizeof(pat), pass ? "%s:" : "%s '",
			         pass ? map[i].key : map[i].var);
			if ((at = strstr(why, pat)) == NULL ||
			    (at != why && at[-1] != ' ' && at[-1] != '('))
				continue;
			char rest[512];
			size_t name_len = strlen(pass ? map[i].key : map[i].var);
			snprintf(rest, sizeof(rest), "%s", at + name_len);
			snprintf(at, len - (size_t)(at - why), "%s%s", map[i].flag, rest);
		}
	}
}

int kpx_provider_start(struct kpx_options *o, char *err, size_t errlen)
{
	const struct kpx_keyless_opts *k = &o->keyless;
	char why[512];

	/* Over the KEYWAY_* variables, which keep overriding openssl.cnf where no flag is given. */
	if (export_setting("servers", k->servers) < 0 ||
	    export_setting("client_cert", k->client_cert) < 0 ||
	    export_setting("client_key", k->client_key) < 0 || export_setting("ca", k->ca) < 0 ||
	    export_setting("server_name", k->server_name) < 0 ||
	    export_setting("fallback_keys", k->fallback_keys) < 0 ||
	    export_uint("timeout_ms", k->timeout_ms) < 0 ||
	    export_uint("attempt_timeout_ms", k->attempt_timeout_ms) < 0 ||
	    export_uint("connections", k->connections) < 0 ||
	    export_uint("max_inflight", k->max_inflight) < 0 ||
	    export_setting("polling", "external") < 0 ||
	    ((o->rsa_batch_given || !o->rsa_batch) &&
	     export_setting("rsa_batch", o->rsa_batch ? "on" : "off") < 0) ||
	    (o->allow_group_readable_keys &&
	     export_setting("allow_group_readable_keys", "1") < 0)) {
		snprintf(err, errlen, "out of memory passing settings to the keyway provider");
		return -KW_ECONFIG;
	}
	/* The trial backend below reports a bad setting in the proxy's words, once. */
	if (o->keys_remote)
		kw_provider_log_config_errors(false);
	/* default first: decoding a KEYWAY KEY file starts with its PEM-to-DER step. */
	if (OSSL_PROVIDER_add_builtin(NULL, "keyway", kw_provider_init) != 1 ||
	    (o->default_provider = OSSL_PROVIDER_load(NULL, "default")) == NULL ||
	    (o->provider = OSSL_PROVIDER_load(NULL, "keyway")) == NULL) {
		set_err(err, errlen, "cannot load the built-in keyway provider", "");
		return -KW_ECONFIG;
	}
	if (!o->keys_remote)
		return 0;
	/* Check the keyserver settings once, here: a trial backend connects nothing. */
	struct kw_loop *loop = NULL;
	struct kw_backend *b = NULL;
	int rc = kw_loop_new(&loop);
	if (rc == 0)
		rc = kw_provider_keyless_backend(o->provider, loop, &b, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "%s", kw_strerror(rc));
	kw_backend_free(b);
	kw_loop_free(loop);
	if (rc < 0) {
		/* Nothing configured is a missing option (usage, exit 2), not a bad file (1). */
		bool missing = strncmp(why, "no keyserver configured", 23) == 0;
		name_flags(k, why, sizeof(why));
		if (strstr(why, "fix:") != NULL) /* the reason names its own fix */
			snprintf(err, errlen, "a --key held by keyservers needs them: %s", why);
		else
			snprintf(
			    err, errlen,
			    "a --key held by keyservers needs them: %s; fix: pass --servers (and "
			    "for TCP --client-cert, --client-key, --ca), or set KEYWAY_SERVERS "
			    "etc.",
			    why);
		return missing ? -EINVAL : -KW_ECONFIG;
	}
	return 0;
}

void kpx_provider_stop(struct kpx_options *o)
{
	if (o->provider != NULL)
		OSSL_PROVIDER_unload(o->provider);
	if (o->default_provider != NULL)
		OSSL_PROVIDER_unload(o->default_provider);
	o->provider = o->default_provider = NULL;
}

static EVP_PKEY *load_uri(const char *uri, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	OSSL_STORE_CTX *st = OSSL_STORE_open_ex(uri, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
	if (st == NULL) {
		set_err(err, errlen, "cannot open the key", uri);
		return NULL;
	}
	while (key == NULL && !OSSL_STORE_eof(st)) {
		OSSL_STORE_INFO *info = OSSL_STORE_load(st);
		if (info != NULL && OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_PKEY)
			key = OSSL_STORE_INFO_get1_PKEY(info);
		OSSL_STORE_INFO_free(info);
		if (info == NULL)
			break;
	}
	OSSL_STORE_close(st);
	if (key == NULL)
		set_err(err, errlen, "no private key at", uri);
	return key;
}

/* held_by_keyway: key came from a KEYWAY KEY reference (public), not local material. */
static bool held_by_keyway(const EVP_PKEY *key)
{
	const OSSL_PROVIDER *p = EVP_PKEY_get0_provider(key);
	return p != NULL && strcmp(OSSL_PROVIDER_get0_name(p), "keyway") == 0;
}

/*
 * load_pem reads the key in path. The mode of a local key is checked again
 * here, on the descriptor it is read from (start-up checked the name; a
 * reload, or a file swapped since, is caught here).
 */
static EVP_PKEY *load_pem(const struct kpx_options *o, const char *path, char *err, size_t errlen)
{
	EVP_PKEY *key = NULL;
	struct stat st;
	int fd = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
	BIO *bio = fd >= 0 && fstat(fd, &st) == 0 ? BIO_new_fd(fd, BIO_CLOSE) : NULL;

	if (bio == NULL && fd >= 0)
		close(fd);
	if (bio != NULL)
		key = PEM_read_bio_PrivateKey(bio, NULL, kw_pem_no_password, NULL);
	BIO_free(bio);
	if (key == NULL) {
		set_err(err, errlen, "cannot load the private key (PEM, unencrypted)", path);
		return NULL;
	}
	if ((st.st_mode & 077) != 0 && !o->allow_group_readable_keys && !held_by_keyway(key)) {
		mode_error("--key", path, st.st_mode, err, errlen);
		EVP_PKEY_free(key);
		return NULL;
	}
	return key;
}

EVP_PKEY *kpx_load_key(const struct kpx_options *o, const char *name, char *err, size_t errlen)
{
	EVP_PKEY *key, *wrapped = NULL;

	ERR_clear_error();
	if (strncmp(name, "keyway:", 7) == 0)
		return load_uri(name, err, errlen);
	if ((key = load_pem(o, name, err, errlen)) == NULL || o->backend != KPX_BACKEND_THREADS ||
	    kpx_key_kind(name) == KPX_KEY_KEYWAY)
		return key;
	if (kw_provider_wrap_key(NULL, key, &wrapped) != 1)
		set_err(err, errlen, "cannot offload the private key in", name);
	EVP_PKEY_free(key);
	return wrapped;
}
