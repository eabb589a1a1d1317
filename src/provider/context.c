/*
 * context.c - the provider context (see context.h): errors, settings, the
 * registry of live instances, the per-process I/O thread's lifecycle
 * across fork(), and the counters written at teardown and exit.
 */
#include "context.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "io.h"
#include "keyway/err.h"
#include "keyway/log.h"
#include "stats.h"

/* ---- errors ---- */

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
		return 0;
	kwp_raise(prov, KWP_R_CONFIG, "%s", prov->settings.error);
	return -KW_ECONFIG;
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

bool kwp_prov_is_live(const struct kwp_prov *prov)
{
	bool live = false;

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

void kwp_prov_free(struct kwp_prov *prov)
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
			kwp_io_free(
			    prov->io); /* ops still in flight complete before this returns */
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

int kwp_prov_new(const OSSL_CORE_HANDLE *handle, const OSSL_DISPATCH *in, struct kwp_prov **out)
{
	struct kwp_prov *prov = calloc(1, sizeof(*prov));
	struct cnf cnf = {handle, NULL};
	int rc = -ENOMEM;

	*out = NULL;
	if (prov == NULL)
		return -ENOMEM;
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
		rc = -EINVAL;
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
	if (prov->settings.error != NULL && kwp_settings_log_errors())
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

	*out = prov;
	return 0;
err:
	kwp_prov_free(prov);
	return rc;
}
