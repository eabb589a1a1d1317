/* settings.c - the provider's settings (see settings.h). */
#include "settings.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bio.h>
#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "keyway/config.h"
#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/provider_api.h"
#include "keyway/provider_settings.h"
#include "keyway/tls.h"

#define MAX_FILE_SIZE (1u << 20)

/* The settings, in the order of keys[]. */
enum {
	S_SERVERS,
	S_CLIENT_CERT,
	S_CLIENT_KEY,
	S_CA,
	S_SERVER_NAME,
	S_TIMEOUT,
	S_CONNECTIONS,
	S_MAX_INFLIGHT,
	S_POLLING,
	S_STATS_FILE,
	S_ATTEMPT_TIMEOUT,
	S_FALLBACK_KEYS,
	S_ALLOW_GROUP_READABLE,
	S_RSA_BATCH,
	S_COUNT
};

/* Each setting's openssl.cnf key; its environment variable is KEYWAY_ and the key in capitals. */
static const char *const keys[S_COUNT] = {
    "servers",
    "client_cert",
    "client_key",
    "ca",
    "server_name",
    "timeout_ms",
    "connections",
    "max_inflight",
    "polling",
    "stats_file",
    "attempt_timeout_ms",
    "fallback_keys",
    "allow_group_readable_keys",
    "rsa_batch",
};

/* The longest variable name, "KEYWAY_ALLOW_GROUP_READABLE_KEYS", and its NUL, with room to
 * spare. */
#define FROM_LEN 40

/* Values set by kw_provider_configure: they override the environment and openssl.cnf. */
static pthread_mutex_t overrides_lock = PTHREAD_MUTEX_INITIALIZER;
static char *overrides[S_COUNT];

static void env_name(char out[FROM_LEN], int which)
{
	size_t i = 0;

	memcpy(out, "KEYWAY_", 7);
	for (const char *k = keys[which]; *k != '\0' && 7 + i + 1 < FROM_LEN; k++)
		out[7 + i++] = (char)toupper((unsigned char)*k);
	out[7 + i] = '\0';
}

/* setting_of finds the setting whose key is name, '-' and '_' alike; -1 if none. */
static int setting_of(const char *name)
{
	for (int i = 0; i < S_COUNT; i++) {
		size_t j = 0;
		for (; name[j] != '\0' && keys[i][j] != '\0'; j++)
			if (name[j] != keys[i][j] && !(name[j] == '-' && keys[i][j] == '_'))
				break;
		if (name[j] == '\0' && keys[i][j] == '\0')
			return i;
	}
	return -1;
}

int kw_provider_configure(const char *name, const char *value)
{
	int which = name != NULL ? setting_of(name) : -1;
	char *copy = NULL;

	if (which < 0)
		return -EINVAL;
	if (value != NULL && (copy = strdup(value)) == NULL)
		return -ENOMEM;
	pthread_mutex_lock(&overrides_lock);
	free(overrides[which]);
	overrides[which] = copy;
	pthread_mutex_unlock(&overrides_lock);
	return 0;
}

static _Atomic bool log_config_errors = true;

void kw_provider_log_config_errors(bool on)
{
	log_config_errors = on;
}

bool kwp_settings_log_errors(void)
{
	return log_config_errors;
}

static void set_error(struct kwp_settings *s, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void set_error(struct kwp_settings *s, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (s->error != NULL)
		return; /* the first problem is the one to fix first */
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	s->error = strdup(msg);
}

/*
 * value returns a setting: kw_provider_configure's value, else the
 * environment's, else openssl.cnf's, else NULL; from names where it came
 * from for messages (a configured value is named by its variable, as the
 * program that set it would have exported it).
 */
static const char *value(int which, kwp_setting_fn get, void *arg, char from[FROM_LEN])
{
	const char *v;

	env_name(from, which);
	pthread_mutex_lock(&overrides_lock);
	v = overrides[which];
	pthread_mutex_unlock(&overrides_lock);
	if (v != NULL || (v = secure_getenv(from)) != NULL)
		return v;
	snprintf(from, FROM_LEN, "%s", keys[which]);
	return get != NULL ? get(arg, keys[which]) : NULL;
}

static int parse_uint(struct kwp_settings *s, const char *from, const char *text, unsigned min,
                      unsigned max, unsigned *out)
{
	if (kw_config_parse_uint(text, min, max, out) < 0) {
		set_error(s, "%s: '%s' is not a number from %u to %u", from, text, min, max);
		return -EINVAL;
	}
	return 0;
}

static char *trim(char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	size_t n = strlen(p);
	while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
		p[--n] = '\0';
	return p;
}

static int parse_servers(struct kwp_settings *s, const char *from, const char *text)
{
	char *copy = strdup(text), *save = NULL;
	size_t cap = 1;
	int rc = 0;

	if (copy == NULL)
		return -ENOMEM;
	for (const char *c = text; *c; c++)
		cap += *c == ',';
	s->addrs = calloc(cap, sizeof(*s->addrs));
	s->server_texts = calloc(cap, sizeof(*s->server_texts));
	if (s->addrs == NULL || s->server_texts == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char err[512];
		tok = trim(tok);
		if (*tok == '\0')
			continue;
		if (s->nservers == KWP_MAX_SERVERS) {
			set_error(s, "%s: more than %d keyservers", from, KWP_MAX_SERVERS);
			break;
		}
		if (kw_addr_parse(&s->addrs[s->nservers], tok, err, sizeof(err)) < 0) {
			set_error(s, "%s: %s", from, err);
			continue;
		}
		if ((s->server_texts[s->nservers] = strdup(tok)) == NULL) {
			rc = -ENOMEM;
			goto out;
		}
		s->nservers++;
	}
out:
	free(copy);
	return rc;
}

/* read_file reads path whole into b; on failure records why and returns a negative code. */
static int read_file(struct kwp_settings *s, const char *from, const char *path, struct kwp_blob *b,
                     bool secret)
{
	FILE *f = fopen(path, "rb");
	struct stat st;
	int rc;

	if (f == NULL) {
		rc = -errno;
		set_error(s, "%s '%s': cannot open: %s; fix: %s", from, path, kw_strerror(rc),
		          rc == -EACCES || rc == -EPERM ? "make it readable by this program's user"
		                                        : "check the path");
		return rc;
	}
	if (fstat(fileno(f), &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > MAX_FILE_SIZE) {
		set_error(s, "%s '%s': not a regular file of at most %u bytes", from, path,
		          MAX_FILE_SIZE);
		fclose(f);
		return -EINVAL;
	}
	/* A private key unlocks the keyservers: private to its owner unless allowed. */
	if (secret && (st.st_mode & 077) != 0 && !s->allow_group_readable_keys) {
		set_error(
		    s,
		    "%s '%s': private key readable by group or others (mode %04o); fix: chmod "
		    "600 %s, or set allow_group_readable_keys (KEYWAY_ALLOW_GROUP_READABLE_KEYS=1)",
		    from, path, (unsigned)(st.st_mode & 07777), path);
		fclose(f);
		return -EPERM;
	}
	b->data = malloc((size_t)st.st_size + 1);
	if (b->data == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	b->len = fread(b->data, 1, (size_t)st.st_size, f);
	rc = ferror(f) ? -EIO : 0;
	fclose(f);
	if (rc < 0)
		set_error(s, "%s '%s': read error", from, path);
	return rc;
}

static void blob_cleanup(struct kwp_blob *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->len);
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

/* load_path copies a path setting and reads its file; "" counts as unset. */
static int load_path(struct kwp_settings *s, int which, kwp_setting_fn get, void *arg, char **path,
                     struct kwp_blob *b)
{
	char from[FROM_LEN];
	const char *v = value(which, get, arg, from);
	if (v == NULL || *v == '\0')
		return 0;
	if ((*path = strdup(v)) == NULL)
		return -ENOMEM;
	int rc = read_file(s, from, v, b, which == S_CLIENT_KEY);
	return rc == -ENOMEM ? rc : 0;
}

bool kwp_settings_need_tls(const struct kwp_settings *s)
{
	for (size_t i = 0; i < s->nservers; i++)
		if (!s->addrs[i].is_unix)
			return true;
	return false;
}

int kwp_settings_load(struct kwp_settings *s, kwp_setting_fn get, void *arg)
{
	char from[FROM_LEN];
	const char *v;
	int rc;

	memset(s, 0, sizeof(*s));
	s->timeout_ms = KWP_DEFAULT_TIMEOUT_MS;
	s->attempt_timeout_ms = KWP_DEFAULT_ATTEMPT_TIMEOUT_MS;
	s->connections = KWP_DEFAULT_CONNECTIONS;
	s->max_inflight = KWP_DEFAULT_MAX_INFLIGHT;
	s->rsa_batch = true;

	if ((v = value(S_SERVERS, get, arg, from)) != NULL && (rc = parse_servers(s, from, v)) < 0)
		return rc;
	if ((v = value(S_TIMEOUT, get, arg, from)) != NULL)
		(void)parse_uint(s, from, v, 1, 3600000, &s->timeout_ms);
	if ((v = value(S_ATTEMPT_TIMEOUT, get, arg, from)) != NULL)
		(void)parse_uint(s, from, v, 1, 3600000, &s->attempt_timeout_ms);
	if ((v = value(S_CONNECTIONS, get, arg, from)) != NULL)
		(void)parse_uint(s, from, v, 1, 64, &s->connections);
	if ((v = value(S_MAX_INFLIGHT, get, arg, from)) != NULL)
		(void)parse_uint(s, from, v, 1, 1000000, &s->max_inflight);
	if ((v = value(S_POLLING, get, arg, from)) != NULL) {
		if (strcmp(v, "internal") == 0)
			s->polling = KWP_POLLING_INTERNAL;
		else if (strcmp(v, "external") == 0)
			s->polling = KWP_POLLING_EXTERNAL;
		else
			set_error(s, "%s: '%s' is neither internal nor external", from, v);
	}
	if ((v = value(S_STATS_FILE, get, arg, from)) != NULL && *v != '\0' &&
	    (s->stats_file = strdup(v)) == NULL)
		return -ENOMEM;
	if ((v = value(S_SERVER_NAME, get, arg, from)) != NULL && *v != '\0' &&
	    (s->server_name = strdup(v)) == NULL)
		return -ENOMEM;
	if ((v = value(S_ALLOW_GROUP_READABLE, get, arg, from)) != NULL) {
		if (strcmp(v, "1") == 0 || strcmp(v, "yes") == 0 || strcmp(v, "true") == 0)
			s->allow_group_readable_keys = true;
		else if (strcmp(v, "0") != 0 && strcmp(v, "no") != 0 && strcmp(v, "false") != 0 &&
		         *v != '\0')
			set_error(s, "%s: '%s' is neither 1 (yes, true) nor 0 (no, false)", from,
			          v);
	}
	if ((v = value(S_RSA_BATCH, get, arg, from)) != NULL && *v != '\0') {
		bool on = strcmp(v, "1") == 0;
		if (!on && strcmp(v, "0") != 0 && kw_config_parse_bool(v, &on) < 0)
			set_error(s, "%s: '%s' is neither on (yes, true, 1) nor off (no, false, 0)",
			          from, v);
		else
			s->rsa_batch = on;
	}
	if ((rc = load_path(s, S_CLIENT_CERT, get, arg, &s->client_cert, &s->cert_pem)) < 0 ||
	    (rc = load_path(s, S_CLIENT_KEY, get, arg, &s->client_key, &s->key_pem)) < 0 ||
	    (rc = load_path(s, S_CA, get, arg, &s->ca, &s->ca_pem)) < 0)
		return rc;
	if ((v = value(S_FALLBACK_KEYS, get, arg, from)) != NULL && *v != '\0') {
		char err[512];
		if ((s->fallback_keys = strdup(v)) == NULL)
			return -ENOMEM;
		rc = kw_keyset_load(v, &s->fallback, err, sizeof(err));
		if (rc == -ENOMEM)
			return rc;
		if (rc < 0)
			set_error(s, "%s: %s", from, err);
	}

	if ((s->client_cert == NULL) != (s->client_key == NULL))
		set_error(s,
		          "client_cert and client_key go together: set both (KEYWAY_CLIENT_CERT, "
		          "KEYWAY_CLIENT_KEY) or neither");
	if (kwp_settings_need_tls(s) && s->ca == NULL)
		set_error(s, "ca is not set: it is required to verify TCP keyservers (set ca or "
		             "KEYWAY_CA)");
	return 0;
}

void kwp_settings_cleanup(struct kwp_settings *s)
{
	for (size_t i = 0; i < s->nservers; i++)
		free(s->server_texts[i]);
	free(s->server_texts);
	free(s->addrs);
	free(s->client_cert);
	free(s->client_key);
	free(s->ca);
	free(s->server_name);
	free(s->stats_file);
	free(s->fallback_keys);
	kw_keyset_free(s->fallback);
	free(s->error);
	free(s->cnf_problem);
	blob_cleanup(&s->cert_pem);
	blob_cleanup(&s->key_pem);
	blob_cleanup(&s->ca_pem);
	memset(s, 0, sizeof(*s));
}

/* ---- TLS context from memory ---- */

/* tls_fail says what failed on path in plain words (OpenSSL's reasons: debug log only). */
static void tls_fail(char *err, size_t errlen, const char *what, const char *path, const char *noun)
{
	char why[400];
	kw_tls_err_explain(why, sizeof(why), noun);
	snprintf(err, errlen, "%s '%s': %s", what, path ? path : "", why);
}

static BIO *blob_bio(const struct kwp_blob *b)
{
	return BIO_new_mem_buf(b->data, (int)b->len);
}

/* add_certs adds every certificate of a PEM blob to store; the count or -1. */
static int add_certs(X509_STORE *store, const struct kwp_blob *b, OSSL_LIB_CTX *libctx)
{
	BIO *bio = blob_bio(b);
	STACK_OF(X509_INFO) *infos = NULL;
	int n = -1;

	if (bio == NULL)
		return -1;
	infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, NULL, libctx, NULL);
	if (infos != NULL) {
		n = 0;
		for (int i = 0; i < sk_X509_INFO_num(infos); i++) {
			X509_INFO *xi = sk_X509_INFO_value(infos, i);
			if (xi->x509 == NULL)
				continue;
			if (X509_STORE_add_cert(store, xi->x509) != 1) {
				n = -1;
				break;
			}
			n++;
		}
	}
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	BIO_free(bio);
	return n;
}

static int use_chain(SSL_CTX *ctx, const struct kwp_blob *b, OSSL_LIB_CTX *libctx)
{
	BIO *bio = blob_bio(b);
	X509 *x = NULL;
	int ok = 0;

	if (bio == NULL)
		return 0;
	if ((x = X509_new_ex(libctx, NULL)) == NULL ||
	    PEM_read_bio_X509(bio, &x, NULL, NULL) == NULL || SSL_CTX_use_certificate(ctx, x) != 1)
		goto out;
	X509_free(x);
	x = NULL;
	/* The rest of the file is the chain. */
	for (;;) {
		ERR_set_mark();
		X509 *c = PEM_read_bio_X509(bio, NULL, NULL, NULL);
		ERR_pop_to_mark();
		if (c == NULL)
			break;
		if (SSL_CTX_add0_chain_cert(ctx, c) != 1) {
			X509_free(c);
			goto out;
		}
	}
	ok = 1;
out:
	X509_free(x);
	BIO_free(bio);
	return ok;
}

SSL_CTX *kwp_settings_ssl_ctx(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, char *err,
                              size_t errlen)
{
	SSL_CTX *ctx = SSL_CTX_new_ex(libctx, NULL, TLS_client_method());
	EVP_PKEY *key = NULL;
	BIO *bio = NULL;

	if (ctx == NULL) {
		tls_fail(err, errlen, "cannot create the keyserver TLS context", NULL, "context");
		return NULL;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (s->ca == NULL) {
		snprintf(err, errlen, "ca is not set: it is required to verify TCP keyservers");
		goto err;
	}
	if (add_certs(SSL_CTX_get_cert_store(ctx), &s->ca_pem, libctx) <= 0) {
		tls_fail(err, errlen, "ca: no usable PEM certificate in", s->ca, "CA certificate");
		goto err;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (s->client_cert != NULL) {
		if (!use_chain(ctx, &s->cert_pem, libctx)) {
			tls_fail(err, errlen, "client_cert: cannot use the PEM certificate in",
			         s->client_cert, "certificate");
			goto err;
		}
		if ((bio = blob_bio(&s->key_pem)) == NULL ||
		    (key = PEM_read_bio_PrivateKey_ex(bio, NULL, kw_pem_no_password, NULL, libctx,
		                                      NULL)) == NULL ||
		    SSL_CTX_use_PrivateKey(ctx, key) != 1) {
			tls_fail(err, errlen, "client_key: cannot use the (unencrypted PEM) key in",
			         s->client_key, "private key");
			goto err;
		}
		if (SSL_CTX_check_private_key(ctx) != 1) {
			tls_fail(err, errlen, "client_key does not match client_cert",
			         s->client_cert, "certificate");
			goto err;
		}
	}
	EVP_PKEY_free(key);
	BIO_free(bio);
	return ctx;
err:
	EVP_PKEY_free(key);
	BIO_free(bio);
	SSL_CTX_free(ctx);
	return NULL;
}

/* ---- openssl.cnf, for tools that are not the provider ---- */

struct cnf_lookup {
	CONF *conf;
	const char *section;
};

static const char *cnf_get(void *arg, const char *name)
{
	struct cnf_lookup *l = arg;
	ERR_set_mark();
	const char *v = NCONF_get_string(l->conf, l->section, name);
	ERR_pop_to_mark();
	return v;
}

/*
 * unlinked_section finds a section that looks like the keyway provider's
 * (named provname, or with servers = and module = ...keyway...) but that the
 * providers list does not name; NULL if none.
 */
static const char *unlinked_section(const CONF *conf, const char *provname)
{
	STACK_OF(OPENSSL_CSTRING) *names = NCONF_get_section_names(conf);
	const char *found = NULL;

	for (int i = 0; names != NULL && found == NULL && i < sk_OPENSSL_CSTRING_num(names); i++) {
		const char *sec = sk_OPENSSL_CSTRING_value(names, i);
		const char *module = NCONF_get_string(conf, sec, "module");
		if (strcmp(sec, provname) == 0 ||
		    (NCONF_get_string(conf, sec, "servers") != NULL && module != NULL &&
		     strstr(module, "keyway") != NULL))
			found = sec;
	}
	sk_OPENSSL_CSTRING_free(names);
	return found;
}

/*
 * cnf_section finds provname's settings section in the loaded file, or
 * records in s why there is none: the operator wrote a section but it is not
 * reached from openssl_conf -> providers, so OpenSSL never loads it.
 */
static const char *cnf_section(struct kwp_settings *s, const CONF *conf, const char *path,
                               const char *provname)
{
	const char *init = NCONF_get_string(conf, NULL, "openssl_conf");
	const char *provs = init ? NCONF_get_string(conf, init, "providers") : NULL;
	const char *sec = provs ? NCONF_get_string(conf, provs, provname) : NULL;
	const char *orphan;
	char msg[512];

	if (sec != NULL)
		return sec;
	orphan = unlinked_section(conf, provname);
	if (init == NULL)
		snprintf(msg, sizeof(msg),
		         "%s: no 'openssl_conf = SECTION' line at the top, so OpenSSL loads no "
		         "providers from it%s%s%s",
		         path, orphan ? " (the section [" : "", orphan ? orphan : "",
		         orphan ? "] is never read)" : "");
	else if (provs == NULL)
		snprintf(msg, sizeof(msg),
		         "%s: section [%s] has no 'providers = SECTION' line; add one and, in that "
		         "section, '%s = %s'",
		         path, init, provname, orphan ? orphan : "SECTION");
	else if (orphan != NULL)
		snprintf(msg, sizeof(msg),
		         "%s: section [%s] is not linked from [%s] (providers), so OpenSSL never "
		         "loads it; fix: add the line '%s = %s' to [%s]",
		         path, orphan, provs, provname, orphan, provs);
	else
		snprintf(msg, sizeof(msg),
		         "%s: [%s] (providers) names no '%s'; fix: add '%s = SECTION' there and a "
		         "[SECTION] with servers = ...",
		         path, provs, provname, provname);
	s->cnf_problem = strdup(msg);
	return NULL;
}

/* cnf_open_problem says why path cannot be read or parsed; from names where path came from. */
static void cnf_open_problem(struct kwp_settings *s, const char *from, const char *path, long eline)
{
	char msg[512];
	FILE *f = fopen(path, "r");

	if (f == NULL) {
		snprintf(msg, sizeof(msg), "%s '%s': cannot open: %s", from, path, strerror(errno));
		s->cnf_fatal = strcmp(from, "OpenSSL's default configuration") != 0;
	} else {
		fclose(f);
		snprintf(msg, sizeof(msg), "%s:%ld: syntax error (%s)", path, eline, from);
		s->cnf_fatal = true;
	}
	s->cnf_problem = strdup(msg);
}

int kwp_settings_from_cnf(struct kwp_settings *s, const char *path, const char *provname)
{
	char *deflt = NULL;
	struct cnf_lookup l = {NULL, NULL};
	const char *from = "--openssl-conf";
	long eline = 0;
	int rc;
	bool loaded = false;

	if (path == NULL && (path = getenv("OPENSSL_CONF")) != NULL)
		from = "OPENSSL_CONF";
	if (path == NULL) {
		path = deflt = CONF_get1_default_config_file();
		from = "OpenSSL's default configuration";
	}
	l.conf = NCONF_new(NULL);
	if (l.conf == NULL) {
		OPENSSL_free(deflt);
		return -ENOMEM;
	}
	ERR_set_mark();
	if (path != NULL && NCONF_load(l.conf, path, &eline) == 1)
		loaded = true;
	ERR_pop_to_mark();
	memset(s, 0, sizeof(*s));
	ERR_set_mark();
	if (loaded)
		l.section = cnf_section(s, l.conf, path, provname);
	else if (path != NULL)
		cnf_open_problem(s, from, path, eline);
	ERR_pop_to_mark();
	/* kwp_settings_load starts from a cleared s: carry the diagnosis across it. */
	char *problem = s->cnf_problem;
	bool fatal = s->cnf_fatal;
	rc = kwp_settings_load(s, l.section ? cnf_get : NULL, &l);
	s->cnf_problem = problem;
	s->cnf_fatal = fatal;
	NCONF_free(l.conf);
	OPENSSL_free(deflt);
	return rc;
}

/* keyless_base fills what every keyless backend of s has: its keyservers, TLS and deadline. */
static void keyless_base(const struct kwp_settings *s, SSL_CTX *ctx, struct kw_keyless_config *cfg)
{
	*cfg = (struct kw_keyless_config){
	    .addrs = s->addrs,
	    .names = (const char *const *)s->server_texts,
	    .nservers = s->nservers,
	    .ssl_ctx = ctx,
	    .server_name = s->server_name,
	    .connections = 1,
	    .timeout_ms = s->timeout_ms,
	};
}

int kwp_settings_keyless_config(const struct kwp_settings *s, OSSL_LIB_CTX *libctx, SSL_CTX *ctx,
                                struct kw_keyless_counters *counters, struct kw_keyless_config *cfg,
                                char *err, size_t errlen)
{
	if (s->fallback != NULL) {
		char why[400];
		if (kw_keyset_prepare(s->fallback, libctx, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "fallback_keys: %s", why);
			return -KW_ECONFIG;
		}
	}
	keyless_base(s, ctx, cfg);
	cfg->connections = s->connections;
	cfg->attempt_timeout_ms = s->attempt_timeout_ms;
	cfg->fallback = s->fallback;
	/* Callers' capacity queues keep within this; the backend's own cap is a safety net. */
	cfg->max_inflight = s->max_inflight;
	cfg->counters = counters;
	return 0;
}

/* ---- the public reader (keyway/provider_settings.h) ---- */

struct kw_provider_settings {
	struct kwp_settings s;
};

int kw_provider_settings_read(const char *cnf_path, const char *provname,
                              struct kw_provider_settings **out)
{
	struct kw_provider_settings *ps = calloc(1, sizeof(*ps));

	*out = NULL;
	if (ps == NULL)
		return -ENOMEM;
	if (kwp_settings_from_cnf(&ps->s, cnf_path, provname) < 0) {
		kw_provider_settings_free(ps);
		return -ENOMEM;
	}
	*out = ps;
	return 0;
}

void kw_provider_settings_free(struct kw_provider_settings *ps)
{
	if (ps == NULL)
		return;
	kwp_settings_cleanup(&ps->s);
	free(ps);
}

const char *kw_provider_settings_error(const struct kw_provider_settings *ps)
{
	return ps->s.error;
}

const char *kw_provider_settings_cnf_problem(const struct kw_provider_settings *ps, bool *fatal)
{
	*fatal = ps->s.cnf_fatal;
	return ps->s.cnf_problem;
}

int kw_provider_settings_keyless(const struct kw_provider_settings *ps,
                                 struct kw_keyless_config *cfg, SSL_CTX **ctx, char *err,
                                 size_t errlen)
{
	const struct kwp_settings *s = &ps->s;

	*ctx = NULL;
	keyless_base(s, NULL, cfg);
	if (kwp_settings_need_tls(s) && (*ctx = kwp_settings_ssl_ctx(s, NULL, err, errlen)) == NULL)
		return -KW_ECONFIG;
	cfg->ssl_ctx = *ctx;
	return 0;
}
