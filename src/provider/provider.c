/*
 * provider.c - the keyway provider's entry point (kwp_prov_init: the
 * module's OSSL_provider_init, or a built-in provider's init function),
 * settings, errors, the algorithm tables, the per-process I/O thread's
 * lifecycle across fork(), and the counters written at teardown.
 */
#include "provider.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/provider.h>

#include "keyway/err.h"
#include "keyway/keyid.h"
#include "keyway/log.h"
#include "remote.h"

#define KWP_VERSION "0.1.0"
#define PROPS "provider=keyway"

/* ---- errors ---- */

static const OSSL_ITEM reason_strings[] = {
    {KWP_R_CONFIG, "keyway provider configuration error"},
    {KWP_R_NOT_CONFIGURED, "no keyserver configured"},
    {KWP_R_BAD_URI, "malformed keyway URI"},
    {KWP_R_BAD_KEY_REF, "malformed KEYWAY KEY reference"},
    {KWP_R_SKI_MISMATCH, "SKI does not match the public key"},
    {KWP_R_UNSUPPORTED_KEY, "key type not supported by keyless"},
    {KWP_R_UNSUPPORTED, "operation not supported by the keyless protocol"},
    {KWP_R_UNREACHABLE, "keyserver unreachable"},
    {KWP_R_TLS, "TLS with the keyserver failed"},
    {KWP_R_TIMEOUT, "keyserver timeout"},
    {KWP_R_KEY_NOT_FOUND, "key not found on the keyserver"},
    {KWP_R_REMOTE_ERROR, "keyserver error"},
    {KWP_R_BAD_RESPONSE, "unexpected keyserver response"},
    {KWP_R_BUFFER_TOO_SMALL, "output buffer too small"},
    {KWP_R_INTERNAL, "keyway provider internal error"},
    {KWP_R_LOCAL, "local key operation failed"},
    {0, NULL},
};

void kwp_raise_at(const struct kwp_prov *prov, const char *file, int line, const char *func,
                  int reason, const char *fmt, ...)
{
	va_list ap;

	if (prov == NULL || prov->c_new_error == NULL)
		return;
	prov->c_new_error(prov->handle);
	prov->c_set_error_debug(prov->handle, file, line, func);
	va_start(ap, fmt);
	prov->c_vset_error(prov->handle, (uint32_t)reason, fmt, ap);
	va_end(ap);
}

int kwp_check_config(const struct kwp_prov *prov)
{
	if (prov->settings.error == NULL)
		return 1;
	kwp_raise(prov, KWP_R_CONFIG, "%s", prov->settings.error);
	return 0;
}

/* ---- per-process I/O thread, and fork ---- */

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kwp_prov *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static char *exit_stats_file; /* the first instance's stats_file, for stats_at_exit */

/*
 * Teardown writes the counters, but may never come: an SSL freed with its
 * job paused (HAProxy) leaks the job and the provider references it holds.
 * So they are also written when the program exits or the module is
 * unloaded (a destructor, unlike atexit, never outlives the module).
 */
__attribute__((destructor)) static void stats_at_exit(void)
{
	if (exit_stats_file != NULL)
		(void)kwp_stats_write(exit_stats_file);
	free(exit_stats_file);
	exit_stats_file = NULL;
}

/* Around fork() every lock is held by the forking thread, so the child gets them unlocked. */
static void fork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
	for (struct kwp_prov *p = registry; p != NULL; p = p->next_prov) {
		pthread_mutex_lock(&p->lock);
		pthread_mutex_lock(&p->cap.mu);
	}
}

static void fork_parent(void)
{
	for (struct kwp_prov *p = registry; p != NULL; p = p->next_prov) {
		pthread_mutex_unlock(&p->cap.mu);
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&registry_lock);
}

static void fork_child(void)
{
	/*
	 * The parent's I/O thread does not exist here, its connections are not
	 * ours, and neither are its in-flight ops and waiting threads.
	 */
	for (struct kwp_prov *p = registry; p != NULL; p = p->next_prov) {
		if (p->io != NULL)
			kwp_io_abandon(p->io);
		p->io = NULL;
		kwp_cap_forget(&p->cap);
		pthread_mutex_unlock(&p->cap.mu);
		pthread_mutex_unlock(&p->lock);
	}
	kwp_stats_reset(); /* each process reports its own work */
	pthread_mutex_unlock(&registry_lock);
}

static void register_atfork(void)
{
	(void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

int kwp_prov_is_live(const struct kwp_prov *prov)
{
	int live = 0;

	pthread_mutex_lock(&registry_lock);
	for (struct kwp_prov *p = registry; p != NULL && !live; p = p->next_prov)
		live = p == prov;
	pthread_mutex_unlock(&registry_lock);
	return live;
}

/*
 * OpenSSL's cleanup at exit tears providers down only after it has stopped
 * running thread-stop handlers, so an I/O thread joined from teardown
 * would leave its thread-local DRBGs behind. Its atexit handlers run
 * first: stop the I/O threads there, each freeing its own state.
 */
static pthread_once_t io_atexit_once = PTHREAD_ONCE_INIT;

static void stop_io_threads(void)
{
	struct kwp_io *ios[64];
	size_t n = 0;

	pthread_mutex_lock(&registry_lock);
	for (struct kwp_prov *p = registry; p != NULL && n < 64; p = p->next_prov) {
		pthread_mutex_lock(&p->lock);
		if (p->io != NULL && kwp_io_pid(p->io) == getpid())
			ios[n++] = p->io;
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&registry_lock);
	/* Outside the locks: completing the I/O thread's ops may take them. */
	for (size_t i = 0; i < n; i++)
		kwp_io_stop(ios[i]);
}

bool kwp_is_module;

static void register_io_atexit(void)
{
	/*
	 * The handler must outlive an OSSL_PROVIDER_unload that would dlclose
	 * keyway.so before exit: pin the module. Built in, it is the program.
	 */
	Dl_info self;
	if (kwp_is_module &&
	    (dladdr((void *)stop_io_threads, &self) == 0 || self.dli_fname == NULL ||
	     dlopen(self.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) == NULL))
		return; /* cannot pin: better a leak report at exit than a dangling handler */
	(void)OPENSSL_atexit(stop_io_threads);
}

struct kwp_io *kwp_prov_io(struct kwp_prov *prov)
{
	struct kwp_io *io;
	int rc = 0;

	pthread_mutex_lock(&prov->lock);
	/* Also catches a child made without running atfork handlers (raw clone). */
	if (prov->io != NULL && kwp_io_pid(prov->io) != getpid()) {
		kwp_io_abandon(prov->io);
		prov->io = NULL;
	}
	if (prov->io == NULL) {
		rc = kwp_io_new(&prov->settings, prov->libctx, &kwp_stats.keyless, &prov->io);
		pthread_once(&io_atexit_once, register_io_atexit);
	}
	io = prov->io;
	pthread_mutex_unlock(&prov->lock);
	if (rc < 0)
		kwp_raise(prov, KWP_R_INTERNAL, "cannot set up keyserver I/O: %s", kw_strerror(rc));
	return io;
}

/* ---- algorithms ---- */

static const OSSL_ALGORITHM keymgmts[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_keymgmt_functions, "RSA key held by a keyserver"},
    {KWP_NAMES_EC, PROPS, kwp_ec_keymgmt_functions, "EC key held by a keyserver"},
    {KWP_NAMES_ED25519, PROPS, kwp_ed25519_keymgmt_functions, "Ed25519 key held by a keyserver"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM stores[] = {
    {KWP_URI_SCHEME, PROPS, kwp_store_functions, "keyway:ski=...;cert=... key URIs"},
    {NULL, NULL, NULL, NULL},
};

#define DER_PROPS PROPS ",input=der,structure=" KWP_DER_STRUCTURE
static const OSSL_ALGORITHM decoders[] = {
    {"DER", PROPS ",input=pem", kwp_pem_decoder_functions, "KEYWAY KEY PEM block"},
    {KWP_NAMES_RSA, DER_PROPS, kwp_der_rsa_decoder_functions, "keyway RSA key reference"},
    {KWP_NAMES_EC, DER_PROPS, kwp_der_ec_decoder_functions, "keyway EC key reference"},
    {KWP_NAMES_ED25519, DER_PROPS, kwp_der_ed25519_decoder_functions,
     "keyway Ed25519 key reference"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM signatures[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_signature_functions, "RSA PKCS#1 v1.5 and PSS by keyserver"},
    {KWP_NAMES_ECDSA, PROPS, kwp_ecdsa_signature_functions, "ECDSA by keyserver"},
    {KWP_NAMES_ED25519, PROPS, kwp_ed25519_signature_functions, "Ed25519 by keyserver"},
    {NULL, NULL, NULL, NULL},
};

static const OSSL_ALGORITHM asym_ciphers[] = {
    {KWP_NAMES_RSA, PROPS, kwp_rsa_asym_cipher_functions, "RSA decryption by keyserver"},
    {NULL, NULL, NULL, NULL},
};

struct order_scan {
	const struct kwp_prov *self;
	bool seen_self;
	int after_self;
};

static int order_cb(OSSL_PROVIDER *p, void *arg)
{
	struct order_scan *scan = arg;
	if (OSSL_PROVIDER_get0_provider_ctx(p) == scan->self)
		scan->seen_self = true;
	else if (scan->seen_self)
		scan->after_self++;
	return 1;
}

/*
 * keep_default_first makes sure the application's unqualified fetches of
 * "RSA" or "EC" key management (libssl's ECDHE key generation and its TLS
 * group list, EVP_PKEY_fromdata...) get OpenSSL's implementation, not our
 * opaque one. OpenSSL takes the first implementation registered, and
 * registers them in the order of its provider list, which is load order
 * ("-provider keyway -provider default") until the list gets sorted by name.
 * So on our first query, if we precede another provider, we have the list
 * sorted ("default" < "keyway"); and if that first query is itself a
 * key-management pass, which runs in the old order, we sit it out
 * (no_cache: we are asked again on the next pass, then after the others).
 * Returns true when this query's key management must be deferred.
 */
static bool keep_default_first(struct kwp_prov *prov, int operation_id)
{
	struct order_scan scan = {prov, false, 0};
	bool defer = false;

	pthread_mutex_lock(&prov->lock);
	if (!prov->order_checked && prov->have_parent) {
		prov->order_checked = true;
		(void)OSSL_PROVIDER_do_all(prov->parent, order_cb, &scan);
		if (scan.seen_self && scan.after_self > 0) {
			/* Any lookup by name sorts OpenSSL's provider list. */
			(void)OSSL_PROVIDER_available(prov->parent, prov->name);
			defer = operation_id == OSSL_OP_KEYMGMT;
		}
	}
	pthread_mutex_unlock(&prov->lock);
	return defer;
}

static const OSSL_ALGORITHM *query_operation(void *provctx, int operation_id, int *no_cache)
{
	*no_cache = 0;
	if (keep_default_first(provctx, operation_id)) {
		*no_cache = 1;
		return NULL;
	}
	switch (operation_id) {
	case OSSL_OP_KEYMGMT:
		return keymgmts;
	case OSSL_OP_STORE:
		return stores;
	case OSSL_OP_DECODER:
		return decoders;
	case OSSL_OP_SIGNATURE:
		return signatures;
	case OSSL_OP_ASYM_CIPHER:
		return asym_ciphers;
	}
	return NULL;
}

static const OSSL_PARAM *gettable_params(void *provctx)
{
	static const OSSL_PARAM p[] = {
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, NULL, 0),
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, NULL, 0),
	    OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, NULL, 0),
	    OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, NULL),
	    OSSL_PARAM_END,
	};
	return p;
}

static int get_params(void *provctx, OSSL_PARAM params[])
{
	OSSL_PARAM *p;

	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "Keyway keyless provider"))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, KWP_VERSION))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) != NULL &&
	    !OSSL_PARAM_set_utf8_ptr(p, "keyway " KWP_VERSION))
		return 0;
	if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) != NULL &&
	    !OSSL_PARAM_set_int(p, 1))
		return 0;
	return 1;
}

static const OSSL_ITEM *get_reason_strings(void *provctx)
{
	return reason_strings;
}

static void prov_free(struct kwp_prov *prov)
{
	if (prov == NULL)
		return;
	pthread_mutex_lock(&registry_lock);
	for (struct kwp_prov **pp = &registry; *pp != NULL; pp = &(*pp)->next_prov)
		if (*pp == prov) {
			*pp = prov->next_prov;
			break;
		}
	pthread_mutex_unlock(&registry_lock);
	if (prov->io != NULL) {
		if (kwp_io_pid(prov->io) == getpid())
			kwp_io_free(prov->io); /* ops still in flight complete before this returns */
		else
			kwp_io_abandon(prov->io);
	}
	/* Written at each teardown (there may be several instances): the last has all. */
	if (prov->settings.stats_file != NULL && kwp_stats_write(prov->settings.stats_file) < 0)
		kw_warn("keyway provider: cannot write stats_file %s", prov->settings.stats_file);
	SSL_CTX_free(prov->ext_ssl_ctx);
	kwp_cap_cleanup(&prov->cap);
	kwp_settings_cleanup(&prov->settings);
	OSSL_LIB_CTX_free(prov->libctx);
	pthread_mutex_destroy(&prov->lock);
	free(prov->name);
	free(prov);
}

static void teardown(void *provctx)
{
	prov_free(provctx);
}

static const OSSL_DISPATCH prov_functions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, (void (*)(void))teardown},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, (void (*)(void))gettable_params},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, (void (*)(void))get_params},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, (void (*)(void))query_operation},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, (void (*)(void))get_reason_strings},
    {0, NULL},
};

/* ---- init ---- */

struct cnf {
	const OSSL_CORE_HANDLE *handle;
	OSSL_FUNC_core_get_params_fn *get;
};

/* cnf_get reads one key of our openssl.cnf section through the core. */
static const char *cnf_get(void *arg, const char *name)
{
	struct cnf *c = arg;
	const char *v = NULL;
	OSSL_PARAM p[2] = {OSSL_PARAM_utf8_ptr(name, (char **)&v, 0), OSSL_PARAM_END};

	if (c->get == NULL || !c->get(c->handle, p) || !OSSL_PARAM_modified(&p[0]))
		return NULL;
	return v;
}

int kwp_prov_init(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in,
                  const OSSL_DISPATCH **out, void **provctx)
{
	struct kwp_prov *prov = calloc(1, sizeof(*prov));
	struct cnf cnf = {handle, NULL};

	if (prov == NULL)
		return 0;
	prov->handle = handle;
	pthread_mutex_init(&prov->lock, NULL);
	kwp_cap_init(&prov->cap, 0);
	for (const OSSL_DISPATCH *f = in; f->function_id != 0; f++) {
		switch (f->function_id) {
		case OSSL_FUNC_CORE_GET_PARAMS:
			cnf.get = OSSL_FUNC_core_get_params(f);
			break;
		case OSSL_FUNC_CORE_NEW_ERROR:
			prov->c_new_error = OSSL_FUNC_core_new_error(f);
			break;
		case OSSL_FUNC_CORE_SET_ERROR_DEBUG:
			prov->c_set_error_debug = OSSL_FUNC_core_set_error_debug(f);
			break;
		case OSSL_FUNC_CORE_VSET_ERROR:
			prov->c_vset_error = OSSL_FUNC_core_vset_error(f);
			break;
		case OSSL_FUNC_BIO_READ_EX:
			prov->c_bio_read_ex = OSSL_FUNC_BIO_read_ex(f);
			break;
		case OSSL_FUNC_CORE_GET_LIBCTX:
			/* The same libcrypto as ours, so the core context is the OSSL_LIB_CTX. */
			prov->parent = (OSSL_LIB_CTX *)OSSL_FUNC_core_get_libctx(f)(handle);
			prov->have_parent = true; /* NULL is the default context */
			break;
		}
	}
	if (prov->c_new_error == NULL || prov->c_set_error_debug == NULL ||
	    prov->c_vset_error == NULL || prov->c_bio_read_ex == NULL) {
		prov->c_new_error = NULL;
		goto err;
	}
	const char *name = cnf_get(&cnf, OSSL_PROV_PARAM_CORE_PROV_NAME);
	if ((prov->name = strdup(name ? name : "keyway")) == NULL)
		goto err;

	/*
	 * Settings and the files they name are read now: this may be the
	 * privileged parent, about to chroot or to fork workers without our
	 * environment. A bad setting does not fail the load (OpenSSL would
	 * hide why): it is logged once here and raised on every operation.
	 */
	if (kwp_settings_load(&prov->settings, cnf_get, &cnf) < 0)
		goto err;
	prov->cap.max = prov->settings.max_inflight;
	if (prov->settings.error != NULL)
		kw_error("keyway provider: configuration error: %s (keys load, but every "
		         "signature and decryption will fail)",
		         prov->settings.error);

	/* Our own fetches (digests, the keyserver TLS context) must never come back to us. */
	prov->libctx = OSSL_LIB_CTX_new_child(handle, in);
	if (prov->libctx == NULL || !EVP_set_default_properties(prov->libctx, "provider!=keyway"))
		goto err;

	pthread_once(&atfork_once, register_atfork);
	pthread_mutex_lock(&registry_lock);
	if (exit_stats_file == NULL && prov->settings.stats_file != NULL)
		exit_stats_file = strdup(prov->settings.stats_file);
	prov->next_prov = registry;
	registry = prov;
	pthread_mutex_unlock(&registry_lock);

	*out = prov_functions;
	*provctx = prov;
	return 1;
err:
	prov_free(prov);
	return 0;
}
