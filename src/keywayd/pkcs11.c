/*
 * pkcs11.c - PKCS#11 token keys (see pkcs11.h).
 *
 * Modules are dlopen()ed and called directly through their function list
 * (no p11-kit proxy, no OpenSSL engine): one registry entry per module path,
 * initialised once per process with CKF_OS_LOCKING_OK -- with NULL arguments
 * SoftHSM2 turns its own locking off -- and finalised when the last set
 * using it goes. A token keeps one "anchor" session open for its life, since
 * the login belongs to the token and ends with its last session, and a pool
 * of sessions for operations (one operation per session at a time), bounded
 * by the token's session limit. A token that grants no session besides the
 * anchor has no pool: its operations take turns on the anchor ("shared"
 * mode), and a load searching objects on the anchor takes its turn too. A
 * token is shared by every set that serves
 * it (see token_get), so a reload neither needs a session more nor logs in
 * again.
 *
 * Keys are indexed like file keys: the public half is rebuilt as an EVP_PKEY
 * from the token's attributes and kw_key_ski / kw_key_digest run on it.
 * CKA_ID is never trusted to be the SKI (conventions differ per tool).
 */
#include "pkcs11.h"

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>

#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include "keyway/err.h"
#include "keyway/keyfile.h"
#include "keyway/keyid.h"
#include "keyway/log.h"

#define MAX_POOL 256 /* sessions per token when the token sets no limit */
#define MAX_PIN 256

/* ---- modules ---------------------------------------------------------- */

struct module {
	struct module *next;
	char *path;
	void *dl;
	CK_FUNCTION_LIST *fl;
	unsigned refs;
	bool finalize; /* we initialised it (not someone else in the process) */
};

static pthread_mutex_t modules_lock = PTHREAD_MUTEX_INITIALIZER;
static struct module *modules;

static void fmt_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fmt_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

const char *kwd_p11_rv_name(unsigned long rv, char *buf, size_t len)
{
	static const struct {
		unsigned long rv;
		const char *name;
	} names[] = {
	    {CKR_OK, "CKR_OK"},
	    {CKR_HOST_MEMORY, "CKR_HOST_MEMORY"},
	    {CKR_SLOT_ID_INVALID, "CKR_SLOT_ID_INVALID"},
	    {CKR_GENERAL_ERROR, "CKR_GENERAL_ERROR"},
	    {CKR_FUNCTION_FAILED, "CKR_FUNCTION_FAILED"},
	    {CKR_ARGUMENTS_BAD, "CKR_ARGUMENTS_BAD"},
	    {CKR_CANT_LOCK, "CKR_CANT_LOCK"},
	    {CKR_DATA_INVALID, "CKR_DATA_INVALID"},
	    {CKR_DATA_LEN_RANGE, "CKR_DATA_LEN_RANGE"},
	    {CKR_DEVICE_ERROR, "CKR_DEVICE_ERROR"},
	    {CKR_DEVICE_MEMORY, "CKR_DEVICE_MEMORY"},
	    {CKR_DEVICE_REMOVED, "CKR_DEVICE_REMOVED"},
	    {CKR_ENCRYPTED_DATA_INVALID, "CKR_ENCRYPTED_DATA_INVALID"},
	    {CKR_ENCRYPTED_DATA_LEN_RANGE, "CKR_ENCRYPTED_DATA_LEN_RANGE"},
	    {CKR_KEY_HANDLE_INVALID, "CKR_KEY_HANDLE_INVALID"},
	    {CKR_KEY_TYPE_INCONSISTENT, "CKR_KEY_TYPE_INCONSISTENT"},
	    {CKR_MECHANISM_INVALID, "CKR_MECHANISM_INVALID"},
	    {CKR_MECHANISM_PARAM_INVALID, "CKR_MECHANISM_PARAM_INVALID"},
	    {CKR_OPERATION_ACTIVE, "CKR_OPERATION_ACTIVE"},
	    {CKR_PIN_INCORRECT, "CKR_PIN_INCORRECT"},
	    {CKR_PIN_LOCKED, "CKR_PIN_LOCKED"},
	    {CKR_SESSION_COUNT, "CKR_SESSION_COUNT"},
	    {CKR_SESSION_HANDLE_INVALID, "CKR_SESSION_HANDLE_INVALID"},
	    {CKR_SESSION_CLOSED, "CKR_SESSION_CLOSED"},
	    {CKR_TOKEN_NOT_PRESENT, "CKR_TOKEN_NOT_PRESENT"},
	    {CKR_TOKEN_NOT_RECOGNIZED, "CKR_TOKEN_NOT_RECOGNIZED"},
	    {CKR_USER_NOT_LOGGED_IN, "CKR_USER_NOT_LOGGED_IN"},
	    {CKR_USER_PIN_NOT_INITIALIZED, "CKR_USER_PIN_NOT_INITIALIZED"},
	    {CKR_CRYPTOKI_NOT_INITIALIZED, "CKR_CRYPTOKI_NOT_INITIALIZED"},
	    {CKR_CRYPTOKI_ALREADY_INITIALIZED, "CKR_CRYPTOKI_ALREADY_INITIALIZED"},
	};
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].rv == rv)
			return names[i].name;
	snprintf(buf, len, "CKR 0x%lx", rv);
	return buf;
}

static struct module *module_ref(struct module *m)
{
	pthread_mutex_lock(&modules_lock);
	m->refs++;
	pthread_mutex_unlock(&modules_lock);
	return m;
}

static void module_unref(struct module *m)
{
	if (m == NULL)
		return;
	pthread_mutex_lock(&modules_lock);
	if (--m->refs > 0) {
		pthread_mutex_unlock(&modules_lock);
		return;
	}
	for (struct module **p = &modules; *p != NULL; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	/*
	 * Finalize under the lock: a load of the same module (module_open, which
	 * initialises under it) must not run C_Initialize before this C_Finalize
	 * -- it would get CKR_CRYPTOKI_ALREADY_INITIALIZED and then use a module
	 * finalized under it (a teardown thread races the next reload).
	 */
	if (m->finalize)
		m->fl->C_Finalize(NULL);
	pthread_mutex_unlock(&modules_lock);
	/*
	 * The module is not dlclose()d: modules (SoftHSM2 among them) keep
	 * thread-local and atexit state that outlives C_Finalize, and a
	 * reload maps the same module again anyway.
	 */
	free(m->path);
	free(m);
}

/* module_open returns the registry entry for path with one more reference. */
static int module_open(const char *path, struct module **out, char *err, size_t errlen)
{
	CK_C_INITIALIZE_ARGS args = {.flags = CKF_OS_LOCKING_OK};
	CK_C_GetFunctionList get;
	struct module *m;
	char rvbuf[32];
	CK_RV rv;
	int rc = -KW_ECONFIG;

	pthread_mutex_lock(&modules_lock);
	for (m = modules; m != NULL; m = m->next)
		if (strcmp(m->path, path) == 0) {
			m->refs++;
			*out = m;
			pthread_mutex_unlock(&modules_lock);
			return 0;
		}
	if ((m = calloc(1, sizeof(*m))) == NULL || (m->path = strdup(path)) == NULL) {
		rc = -ENOMEM;
		goto fail;
	}
	if ((m->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL)) == NULL) {
		fmt_err(err, errlen, "PKCS#11 module %s cannot be loaded: %s", path, dlerror());
		goto fail;
	}
	*(void **)&get = dlsym(m->dl, "C_GetFunctionList");
	if (get == NULL || get(&m->fl) != CKR_OK || m->fl == NULL) {
		fmt_err(err, errlen, "%s is not a PKCS#11 module (no C_GetFunctionList)", path);
		goto fail;
	}
	rv = m->fl->C_Initialize(&args);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		fmt_err(err, errlen, "PKCS#11 module %s: C_Initialize failed: %s", path,
		        kwd_p11_rv_name(rv, rvbuf, sizeof(rvbuf)));
		goto fail;
	}
	m->finalize = rv == CKR_OK;
	m->refs = 1;
	m->next = modules;
	modules = m;
	pthread_mutex_unlock(&modules_lock);
	*out = m;
	return 0;
fail:
	if (rc == -ENOMEM)
		fmt_err(err, errlen, "out of memory");
	if (m != NULL && m->dl != NULL)
		dlclose(m->dl);
	if (m != NULL)
		free(m->path);
	free(m);
	pthread_mutex_unlock(&modules_lock);
	return rc;
}

/* ---- tokens and their sessions ------------------------------------------ */

struct kwd_p11_token {
	struct module *mod;
	CK_SLOT_ID slot;
	char label[33];
	unsigned char serial[16]; /* CK_TOKEN_INFO's, to tell a token put in the same slot */
	unsigned refs;            /* sets holding it; under tokens_lock */
	bool stale;               /* its login session failed: not shared any more */
	struct kwd_p11_token *next_live;
	char *pin; /* kept for logging in again after a token reset; wiped */
	size_t pin_len;
	CK_SESSION_HANDLE anchor; /* holds the login */
	bool has_anchor;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	/* The anchor is used by one thread at a time: a load (anchor_take) and, in
	 * shared mode, each operation. Under lock. */
	bool shared; /* no pool: operations run on the anchor, one at a time */
	bool anchor_busy;
	pthread_cond_t anchor_cond;
	unsigned open; /* pool sessions open (idle or lent) */
	unsigned max;  /* pool limit */
	unsigned nidle;
	CK_SESSION_HANDLE idle[MAX_POOL];
};

static void token_free(struct kwd_p11_token *t)
{
	if (t == NULL)
		return;
	if (t->mod != NULL) {
		for (unsigned i = 0; i < t->nidle; i++)
			t->mod->fl->C_CloseSession(t->idle[i]);
		if (t->has_anchor)
			t->mod->fl->C_CloseSession(t->anchor);
	}
	if (t->pin != NULL) {
		OPENSSL_cleanse(t->pin, t->pin_len);
		free(t->pin);
	}
	pthread_mutex_destroy(&t->lock);
	pthread_cond_destroy(&t->cond);
	pthread_cond_destroy(&t->anchor_cond);
	module_unref(t->mod);
	free(t);
}

/*
 * The tokens of every live set. A reload shares them instead of opening a
 * second login session and pool beside the old set's: on a token with a
 * small session limit (a smart card, a YubiHSM) the old set's sessions
 * would leave none for the new one and every reload would fail until a
 * restart, ACL and CRL changes included.
 */
static pthread_mutex_t tokens_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kwd_p11_token *live_tokens;

static void token_unref(struct kwd_p11_token *t)
{
	if (t == NULL)
		return;
	pthread_mutex_lock(&tokens_lock);
	if (--t->refs > 0) {
		pthread_mutex_unlock(&tokens_lock);
		return;
	}
	for (struct kwd_p11_token **p = &live_tokens; *p != NULL; p = &(*p)->next_live)
		if (*p == t) {
			*p = t->next_live;
			break;
		}
	pthread_mutex_unlock(&tokens_lock);
	token_free(t);
}

/* login logs s's token in; a login another session made counts as success. */
static CK_RV login(struct kwd_p11_token *t, CK_SESSION_HANDLE s)
{
	if (t->pin == NULL)
		return CKR_OK;
	CK_RV rv = t->mod->fl->C_Login(s, CKU_USER, (CK_UTF8CHAR *)t->pin, t->pin_len);
	return rv == CKR_USER_ALREADY_LOGGED_IN ? CKR_OK : rv;
}

/* anchor_take waits for the anchor session to be t's caller's alone (see anchor_busy). */
static void anchor_take(struct kwd_p11_token *t)
{
	pthread_mutex_lock(&t->lock);
	while (t->anchor_busy)
		pthread_cond_wait(&t->anchor_cond, &t->lock);
	t->anchor_busy = true;
	pthread_mutex_unlock(&t->lock);
}

static void anchor_give(struct kwd_p11_token *t)
{
	pthread_mutex_lock(&t->lock);
	t->anchor_busy = false;
	pthread_cond_signal(&t->anchor_cond);
	pthread_mutex_unlock(&t->lock);
}

/*
 * anchor_reopen replaces t's anchor (held with anchor_take) once the token
 * no longer knows it (a reset, a removal): the new one logs in again. Key
 * handles the token dropped meanwhile come back with the next reload, which
 * finds the objects again. On failure t has no anchor until the next try.
 */
static CK_RV anchor_reopen(struct kwd_p11_token *t)
{
	CK_RV rv;

	if (t->has_anchor)
		t->mod->fl->C_CloseSession(t->anchor);
	t->has_anchor = false;
	rv = t->mod->fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, &t->anchor);
	if (rv != CKR_OK)
		return rv;
	t->has_anchor = true;
	return login(t, t->anchor);
}

/*
 * go_shared switches t (lock held) to running its operations on the anchor:
 * the token granted it no session besides the anchor. Said once, since it
 * makes the token serve one operation at a time.
 */
static void go_shared(struct kwd_p11_token *t)
{
	if (t->shared)
		return;
	t->shared = true;
	t->max = 0;
	pthread_cond_broadcast(&t->cond); /* waiters for a pool session take the anchor now */
	kw_info("token %s grants no session besides the login session: its operations run on "
	        "that session, one at a time",
	        t->label);
}

/* shared_get lends t's anchor (shared mode) once no other thread uses it; lock held. */
static CK_RV shared_get(struct kwd_p11_token *t, CK_SESSION_HANDLE *out)
{
	CK_RV rv = CKR_OK;

	while (t->anchor_busy)
		pthread_cond_wait(&t->anchor_cond, &t->lock);
	t->anchor_busy = true;
	pthread_mutex_unlock(&t->lock);
	if (!t->has_anchor) /* it broke and could not be replaced then: try again */
		rv = anchor_reopen(t);
	if (rv == CKR_OK) {
		*out = t->anchor;
		return CKR_OK;
	}
	anchor_give(t);
	return rv;
}

/*
 * session_get lends a pool session, opening one while under the limit and
 * waiting for one to come back otherwise. A token answering
 * CKR_SESSION_COUNT lowers the limit to what it has granted; one that grants
 * none besides the anchor goes shared (go_shared) and lends the anchor.
 */
static CK_RV session_get(struct kwd_p11_token *t, CK_SESSION_HANDLE *out)
{
	CK_RV rv;

	pthread_mutex_lock(&t->lock);
	for (;;) {
		if (t->shared)
			return shared_get(t, out); /* unlocks */
		if (t->nidle > 0) {
			*out = t->idle[--t->nidle];
			pthread_mutex_unlock(&t->lock);
			return CKR_OK;
		}
		if (t->open < t->max)
			break;
		pthread_cond_wait(&t->cond, &t->lock);
	}
	t->open++;
	pthread_mutex_unlock(&t->lock);
	rv = t->mod->fl->C_OpenSession(t->slot, CKF_SERIAL_SESSION, NULL, NULL, out);
	if (rv == CKR_OK)
		return CKR_OK;
	pthread_mutex_lock(&t->lock);
	t->open--;
	if (rv == CKR_SESSION_COUNT && t->open == 0) {
		/* No pool session is open or being opened: only the anchor is granted. */
		go_shared(t);
		return shared_get(t, out); /* unlocks */
	}
	if (rv == CKR_SESSION_COUNT && t->open > 0) {
		t->max = t->open; /* the token's real limit: wait for a lent one */
		while (t->nidle == 0 && !t->shared)
			pthread_cond_wait(&t->cond, &t->lock);
		if (t->shared)
			return shared_get(t, out); /* unlocks */
		*out = t->idle[--t->nidle];
		rv = CKR_OK;
	}
	pthread_mutex_unlock(&t->lock);
	return rv;
}

static void session_put(struct kwd_p11_token *t, CK_SESSION_HANDLE s, bool broken)
{
	pthread_mutex_lock(&t->lock);
	bool on_anchor = t->shared && s == t->anchor;
	pthread_mutex_unlock(&t->lock);
	if (on_anchor) {
		/* Closing the token's only session would log it out, and a token may then
		 * drop the handles of its private keys (SoftHSM2 does): the anchor is
		 * replaced only if it is really gone. A failed operation has ended. */
		CK_SESSION_INFO si;
		if (broken && t->mod->fl->C_GetSessionInfo(s, &si) != CKR_OK)
			anchor_reopen(t); /* a failure is retried by the next shared_get */
		anchor_give(t);
		return;
	}
	if (broken)
		t->mod->fl->C_CloseSession(s);
	pthread_mutex_lock(&t->lock);
	if (broken)
		t->open--;
	else
		t->idle[t->nidle++] = s;
	pthread_cond_signal(&t->cond);
	pthread_mutex_unlock(&t->lock);
}

/* ---- sets ---------------------------------------------------------------- */

struct kwd_p11_set {
	atomic_uint refs;
	size_t ntokens, nkeys;
	struct kwd_p11_token **tokens;
	struct kwd_p11_key *keys;
};

static void key_cleanup(struct kwd_p11_key *k)
{
	EVP_PKEY_free(k->pub);
	free(k->modulus);
	free(k->label);
	free(k->name);
	memset(k, 0, sizeof(*k));
}

struct kwd_p11_set *kwd_p11_set_ref(struct kwd_p11_set *s)
{
	atomic_fetch_add(&s->refs, 1);
	return s;
}

static void set_destroy(struct kwd_p11_set *s)
{
	for (size_t i = 0; i < s->nkeys; i++)
		key_cleanup(&s->keys[i]);
	free(s->keys);
	for (size_t i = 0; i < s->ntokens; i++)
		token_unref(s->tokens[i]);
	free(s->tokens);
	free(s);
}

/* Sets being torn down on their own threads (see kwd_p11_set_unref). */
static pthread_mutex_t teardown_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t teardown_cond = PTHREAD_COND_INITIALIZER;
static unsigned teardowns;

static void *teardown_main(void *arg)
{
	set_destroy(arg);
	/* This thread is detached: free OpenSSL's state of it (the token may have
	 * used libcrypto here) before the exit it may race is told it is done. */
	OPENSSL_thread_stop();
	pthread_mutex_lock(&teardown_lock);
	if (--teardowns == 0)
		pthread_cond_broadcast(&teardown_cond);
	pthread_mutex_unlock(&teardown_lock);
	return NULL;
}

/*
 * The last reference to an old set is usually dropped by a worker, on its
 * loop, when it lets go of a generation after a reload; closing sessions
 * and finalising a module can take a network HSM round trips, so the
 * teardown runs on a thread of its own (inline only if none can start).
 */
void kwd_p11_set_unref(struct kwd_p11_set *s)
{
	pthread_attr_t attr;
	pthread_t th;

	if (s == NULL || atomic_fetch_sub(&s->refs, 1) != 1)
		return;
	pthread_mutex_lock(&teardown_lock);
	teardowns++;
	pthread_mutex_unlock(&teardown_lock);
	if (pthread_attr_init(&attr) == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		int rc = pthread_create(&th, &attr, teardown_main, s);
		pthread_attr_destroy(&attr);
		if (rc == 0)
			return;
	}
	teardown_main(s);
}

void kwd_p11_wait_teardowns(void)
{
	pthread_mutex_lock(&teardown_lock);
	while (teardowns > 0)
		pthread_cond_wait(&teardown_cond, &teardown_lock);
	pthread_mutex_unlock(&teardown_lock);
}

size_t kwd_p11_set_count(const struct kwd_p11_set *s)
{
	return s->nkeys;
}

const struct kwd_p11_key *kwd_p11_set_key(const struct kwd_p11_set *s, size_t i)
{
	return i < s->nkeys ? &s->keys[i] : NULL;
}

/* ---- loading ------------------------------------------------------------- */

/* What one URI asks for, while it is being loaded. */
struct uri_ctx {
	const struct kwd_p11_options *o;
	struct kwd_p11_set *set;
	P11KitUri *uri;
	char shown[512]; /* the URI with any pin-value blanked, for messages */
	char *err;
	size_t errlen;
};

/* put appends n bytes of s at out[*o], truncating at len - 1 (out stays a string). */
static void put(char *out, size_t len, size_t *o, const char *s, size_t n)
{
	if (*o + n >= len)
		n = len - 1 - *o;
	memcpy(out + *o, s, n);
	*o += n;
	out[*o] = '\0';
}

/*
 * redact copies uri into out with the value of every pin-value replaced by
 * "***". Every occurrence and any letter case: p11-kit may take either of two
 * pin-values, or refuse the URI, and the message shows the URI either way. A
 * value ends where p11-kit ends it: at '&' in the query, where ';' may be part
 * of the PIN, and at ';' or '?' in the path.
 */
static void redact(char *out, size_t len, const char *uri)
{
	static const char key[] = "pin-value=";
	const char *query = strchr(uri, '?');
	const char *p = uri;
	size_t o = 0;

	out[0] = '\0';
	while (*p != '\0') {
		if (strncasecmp(p, key, sizeof(key) - 1) != 0) {
			put(out, len, &o, p++, 1);
			continue;
		}
		put(out, len, &o, p, sizeof(key) - 1);
		put(out, len, &o, "***", 3);
		p += sizeof(key) - 1;
		p += strcspn(p, query != NULL && p > query ? "&" : ";?");
	}
}

/* blank_trim copies a blank-padded PKCS#11 string field into a C string. */
static void blank_trim(char *out, const unsigned char *in, size_t n)
{
	while (n > 0 && in[n - 1] == ' ')
		n--;
	memcpy(out, in, n);
	out[n] = '\0';
}

/* read_pin fills t's PIN from pin-value or the pin-source file. */
static int read_pin(struct uri_ctx *c, struct kwd_p11_token *t)
{
	const char *v = p11_kit_uri_get_pin_value(c->uri);
	const char *src = p11_kit_uri_get_pin_source(c->uri);
	struct kw_keyfile f = {0};
	int rc;

	if (v != NULL) {
		t->pin_len = strlen(v);
		if ((t->pin = strdup(v)) == NULL)
			return -ENOMEM;
		return 0;
	}
	if (src == NULL)
		return 0;
	if (strncmp(src, "file:", 5) == 0)
		src += strncmp(src, "file://", 7) == 0 ? 7 : 5;
	struct kw_keyfile_options kf = {
	    .allow_group_readable = c->o->allow_group_readable,
	    .mode_fix = " or pass --allow-group-readable-keys",
	};
	rc = kw_keyfile_read(AT_FDCWD, src, src, &kf, &f, c->err, c->errlen);
	if (rc == 1) {
		fmt_err(c->err, c->errlen, "%s: pin-source %s is not a regular file", c->shown,
		        src);
		return -KW_ECONFIG;
	}
	if (rc != 0)
		return rc < 0 ? rc : -KW_ECONFIG;
	size_t n = f.len;
	while (n > 0 && (f.data[n - 1] == '\n' || f.data[n - 1] == '\r'))
		n--;
	if (n > MAX_PIN) {
		fmt_err(c->err, c->errlen, "%s: pin-source %s is too long for a PIN", c->shown,
		        src);
		kw_keyfile_cleanup(&f);
		return -KW_ECONFIG;
	}
	if ((t->pin = malloc(n + 1)) == NULL) {
		kw_keyfile_cleanup(&f);
		return -ENOMEM;
	}
	memcpy(t->pin, f.data, n);
	t->pin[n] = '\0';
	t->pin_len = n;
	kw_keyfile_cleanup(&f);
	return 0;
}

/* get_attr reads one attribute of obj into a malloc'd buffer; CKR_* */
static CK_RV get_attr(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE obj,
                      CK_ATTRIBUTE_TYPE type, uint8_t **out, size_t *len)
{
	CK_ATTRIBUTE a = {type, NULL, 0};
	CK_RV rv = fl->C_GetAttributeValue(s, obj, &a, 1);

	*out = NULL;
	*len = 0;
	if (rv != CKR_OK)
		return rv;
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION)
		return CKR_ATTRIBUTE_TYPE_INVALID;
	if ((a.pValue = malloc(a.ulValueLen + 1)) == NULL)
		return CKR_HOST_MEMORY;
	if ((rv = fl->C_GetAttributeValue(s, obj, &a, 1)) != CKR_OK) {
		free(a.pValue);
		return rv;
	}
	*out = a.pValue;
	*len = a.ulValueLen;
	return CKR_OK;
}

/* find_objects collects up to cap handles matching tmpl into out; the count or -1. */
static long find_objects(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, CK_ATTRIBUTE *tmpl, CK_ULONG n,
                         CK_OBJECT_HANDLE **out)
{
	size_t cap = 16, count = 0;
	CK_OBJECT_HANDLE *h = malloc(cap * sizeof(*h));
	CK_ULONG got;

	*out = NULL;
	if (h == NULL || fl->C_FindObjectsInit(s, tmpl, n) != CKR_OK) {
		free(h);
		return -1;
	}
	for (;;) {
		if (count == cap) {
			CK_OBJECT_HANDLE *nh = realloc(h, 2 * cap * sizeof(*h));
			if (nh == NULL)
				break;
			h = nh;
			cap *= 2;
		}
		if (fl->C_FindObjects(s, h + count, cap - count, &got) != CKR_OK || got == 0)
			break;
		count += got;
	}
	fl->C_FindObjectsFinal(s);
	*out = h;
	return (long)count;
}

/* public_of finds the public-key object with id (the private key's CKA_ID). */
static CK_OBJECT_HANDLE public_of(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, const uint8_t *id,
                                  size_t id_len)
{
	CK_OBJECT_CLASS cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE tmpl[] = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_ID, (void *)id, id_len}};
	CK_OBJECT_HANDLE *h, found = CK_INVALID_HANDLE;
	long n = find_objects(fl, s, tmpl, id != NULL ? 2 : 1, &h);

	if (n >= 1 && id != NULL)
		found = h[0];
	free(h);
	return found;
}

static EVP_PKEY *rsa_public(const uint8_t *n, size_t nlen, const uint8_t *e, size_t elen)
{
	OSSL_PARAM_BLD *b = OSSL_PARAM_BLD_new();
	BIGNUM *bn = BN_bin2bn(n, (int)nlen, NULL), *be = BN_bin2bn(e, (int)elen, NULL);
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *ctx = NULL;
	EVP_PKEY *pkey = NULL;

	if (b == NULL || bn == NULL || be == NULL ||
	    !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_N, bn) ||
	    !OSSL_PARAM_BLD_push_BN(b, OSSL_PKEY_PARAM_RSA_E, be) ||
	    (params = OSSL_PARAM_BLD_to_param(b)) == NULL ||
	    (ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(b);
	BN_free(bn);
	BN_free(be);
	return pkey;
}

/* ec_group names the curve of a DER OID in CKA_EC_PARAMS, NULL if unsupported. */
static const char *ec_group(const uint8_t *der, size_t len, size_t *field)
{
	const unsigned char *p = der;
	ASN1_OBJECT *obj = d2i_ASN1_OBJECT(NULL, &p, (long)len);
	int nid = obj != NULL ? OBJ_obj2nid(obj) : NID_undef;

	ASN1_OBJECT_free(obj);
	switch (nid) {
	case NID_X9_62_prime256v1:
		*field = 32;
		return "prime256v1";
	case NID_secp384r1:
		*field = 48;
		return "secp384r1";
	case NID_secp521r1:
		*field = 66;
		return "secp521r1";
	}
	return NULL;
}

/*
 * raw_point returns the point inside CKA_EC_POINT, which tokens give either
 * as a DER OCTET STRING or raw (SoftHSM2 2.6: wrapped for ECDSA, raw for
 * Ed25519). A value of the raw size is raw -- a raw point can begin with
 * bytes that also read as an OCTET STRING header.
 */
static const uint8_t *raw_point(const uint8_t *p, size_t len, size_t raw_len, size_t *out_len)
{
	if (len == raw_len) {
		*out_len = len;
		return p;
	}
	if (len >= 2 && p[0] == 0x04) {
		size_t hdr = 2, n = p[1];
		if (p[1] == 0x81 && len >= 3) {
			hdr = 3;
			n = p[2];
		}
		if (hdr + n == len) {
			*out_len = n;
			return p + hdr;
		}
	}
	*out_len = len;
	return p;
}

static EVP_PKEY *ec_public(const char *group, const uint8_t *pt, size_t len)
{
	OSSL_PARAM params[] = {
	    OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)group, 0),
	    OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)pt, len),
	    OSSL_PARAM_construct_end(),
	};
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	EVP_PKEY *pkey = NULL;

	if (ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) != 1)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	return pkey;
}

/* Attributes of one private key and its public half, as read from the token. */
struct key_attrs {
	uint8_t *id, *label, *modulus, *exponent, *params, *point;
	size_t id_len, label_len, modulus_len, exponent_len, params_len, point_len;
};

static void attrs_free(struct key_attrs *a)
{
	free(a->id);
	free(a->label);
	free(a->modulus);
	free(a->exponent);
	free(a->params);
	free(a->point);
}

/* public_key rebuilds the public key of priv from its or its public object's attributes. */
static EVP_PKEY *public_key(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, CK_OBJECT_HANDLE priv,
                            CK_KEY_TYPE kt, struct key_attrs *a, const char **why)
{
	CK_OBJECT_HANDLE pub = CK_INVALID_HANDLE;
	size_t field = 0, plen;
	const uint8_t *pt;

	*why = "its public key is on neither the private object nor a public-key object "
	       "with the same CKA_ID";
	if (kt == CKK_RSA) {
		/* RSA private objects usually carry the public attributes too. */
		if (get_attr(fl, s, priv, CKA_MODULUS, &a->modulus, &a->modulus_len) != CKR_OK ||
		    get_attr(fl, s, priv, CKA_PUBLIC_EXPONENT, &a->exponent, &a->exponent_len) !=
		        CKR_OK) {
			free(a->modulus);
			a->modulus = NULL;
			if ((pub = public_of(fl, s, a->id, a->id_len)) == CK_INVALID_HANDLE ||
			    get_attr(fl, s, pub, CKA_MODULUS, &a->modulus, &a->modulus_len) !=
			        CKR_OK ||
			    get_attr(fl, s, pub, CKA_PUBLIC_EXPONENT, &a->exponent,
			             &a->exponent_len) != CKR_OK)
				return NULL;
		}
		return rsa_public(a->modulus, a->modulus_len, a->exponent, a->exponent_len);
	}
	if (kt != CKK_EC && kt != CKK_EC_EDWARDS) {
		*why = "it is not an RSA, ECDSA or Ed25519 key";
		return NULL;
	}
	/* EC private objects need not expose CKA_EC_POINT (SoftHSM2's do not). */
	if (get_attr(fl, s, priv, CKA_EC_POINT, &a->point, &a->point_len) != CKR_OK ||
	    get_attr(fl, s, priv, CKA_EC_PARAMS, &a->params, &a->params_len) != CKR_OK) {
		free(a->point);
		free(a->params);
		a->point = a->params = NULL;
		if ((pub = public_of(fl, s, a->id, a->id_len)) == CK_INVALID_HANDLE ||
		    get_attr(fl, s, pub, CKA_EC_POINT, &a->point, &a->point_len) != CKR_OK ||
		    get_attr(fl, s, pub, CKA_EC_PARAMS, &a->params, &a->params_len) != CKR_OK)
			return NULL;
	}
	if (kt == CKK_EC_EDWARDS) {
		pt = raw_point(a->point, a->point_len, 32, &plen);
		if (plen != 32) {
			*why = "it is an Edwards key other than Ed25519";
			return NULL;
		}
		return EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, pt, plen);
	}
	const char *group = ec_group(a->params, a->params_len, &field);
	if (group == NULL) {
		*why = "its EC curve is not supported (P-256, P-384 or P-521)";
		return NULL;
	}
	pt = raw_point(a->point, a->point_len, 2 * field + 1, &plen);
	*why = "its CKA_EC_POINT is not a point of its curve";
	return ec_public(group, pt, plen);
}

/* modulus_bytes returns n as k big-endian bytes (for the c < n check of raw decryption). */
static uint8_t *modulus_bytes(const EVP_PKEY *pub, size_t k)
{
	BIGNUM *n = NULL;
	uint8_t *out = NULL;

	if (EVP_PKEY_get_bn_param(pub, OSSL_PKEY_PARAM_RSA_N, &n) == 1 &&
	    (out = malloc(k)) != NULL && BN_bn2binpad(n, out, (int)k) != (int)k) {
		free(out);
		out = NULL;
	}
	BN_free(n);
	return out;
}

/* check_size refuses RSA sizes file keys refuse too. */
static bool size_ok(const struct kwd_p11_key *k)
{
	return k->type != KW_KEY_RSA || (k->bits >= 2048 && k->bits <= 4096);
}

static int add_key(struct uri_ctx *c, struct kwd_p11_token *t, CK_SESSION_HANDLE s,
                   CK_OBJECT_HANDLE h)
{
	CK_FUNCTION_LIST *fl = t->mod->fl;
	struct key_attrs a = {0};
	struct kwd_p11_key k = {.token = t, .handle = h};
	CK_KEY_TYPE kt = 0;
	CK_ATTRIBUTE ta = {CKA_KEY_TYPE, &kt, sizeof(kt)};
	const char *why = NULL;
	char idhex[65] = "";
	int rc = -KW_ECONFIG;

	/* Two URIs selecting the same object serve it once. */
	for (size_t i = 0; i < c->set->nkeys; i++)
		if (c->set->keys[i].token == t && c->set->keys[i].handle == h)
			return 0;
	get_attr(fl, s, h, CKA_ID, &a.id, &a.id_len);
	get_attr(fl, s, h, CKA_LABEL, &a.label, &a.label_len);
	if (a.id != NULL && a.id_len <= 32)
		kw_hex(idhex, a.id, a.id_len);
	if (a.label != NULL && a.label_len > 0) {
		a.label[a.label_len] = '\0';
		if ((k.label = strdup((char *)a.label)) == NULL)
			goto nomem;
	}
	if (asprintf(&k.name, "pkcs11:token=%s;object=%s;id=%s", t->label,
	             k.label != NULL ? k.label : "", idhex) < 0) {
		k.name = NULL;
		goto nomem;
	}
	if (fl->C_GetAttributeValue(s, h, &ta, 1) != CKR_OK) {
		why = "its CKA_KEY_TYPE cannot be read";
		goto refuse;
	}
	if ((k.pub = public_key(fl, s, h, kt, &a, &why)) == NULL)
		goto refuse;
	k.type = (enum kw_key_type)kw_key_type_of(k.pub);
	k.bits = (unsigned)EVP_PKEY_get_bits(k.pub);
	if (k.type == 0 || !size_ok(&k)) {
		why = "its type or size is not supported (RSA 2048-4096, P-256/384/521, Ed25519)";
		goto refuse;
	}
	if (kw_key_ski(k.pub, k.ski) != 0 ||
	    (k.type == KW_KEY_RSA && kw_key_digest(k.pub, k.digest) != 0)) {
		why = "its SKI cannot be computed";
		goto refuse;
	}
	k.has_digest = k.type == KW_KEY_RSA;
	if (k.type == KW_KEY_RSA && (k.modulus = modulus_bytes(k.pub, (k.bits + 7) / 8)) == NULL)
		goto nomem;
	struct kwd_p11_key *nk = realloc(c->set->keys, (c->set->nkeys + 1) * sizeof(*nk));
	if (nk == NULL)
		goto nomem;
	c->set->keys = nk;
	nk[c->set->nkeys++] = k;
	attrs_free(&a);
	return 0;
refuse:
	ERR_clear_error();
	fmt_err(c->err, c->errlen,
	        "%s: key %s cannot be served: %s (narrow the URI with id= or object=)", c->shown,
	        k.name, why);
	goto out;
nomem:
	rc = -ENOMEM;
	fmt_err(c->err, c->errlen, "out of memory");
out:
	attrs_free(&a);
	key_cleanup(&k);
	return rc;
}

/* load_keys adds every private key of t that the URI selects. */
static int load_keys(struct uri_ctx *c, struct kwd_p11_token *t)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[3] = {{CKA_CLASS, &cls, sizeof(cls)}};
	CK_ULONG n = 1;
	CK_ATTRIBUTE *a;
	CK_OBJECT_HANDLE *h;
	int rc = 0;

	if ((a = p11_kit_uri_get_attribute(c->uri, CKA_CLASS)) != NULL &&
	    (a->ulValueLen != sizeof(cls) || *(CK_OBJECT_CLASS *)a->pValue != CKO_PRIVATE_KEY)) {
		fmt_err(c->err, c->errlen,
		        "%s: selects no private key (type= must be private, or left out)",
		        c->shown);
		return -KW_ECONFIG;
	}
	if ((a = p11_kit_uri_get_attribute(c->uri, CKA_ID)) != NULL)
		tmpl[n++] = *a;
	if ((a = p11_kit_uri_get_attribute(c->uri, CKA_LABEL)) != NULL)
		tmpl[n++] = *a;
	/* A shared token's operations run on the anchor too: take a turn. */
	anchor_take(t);
	long found = t->has_anchor ? find_objects(t->mod->fl, t->anchor, tmpl, n, &h) : -1;
	for (long i = 0; i < found && rc == 0; i++)
		rc = add_key(c, t, t->anchor, h[i]);
	anchor_give(t);
	free(h);
	if (rc == 0 && found <= 0) {
		fmt_err(c->err, c->errlen, "%s: no private key on token %s matches", c->shown,
		        t->label);
		rc = -KW_ECONFIG;
	}
	return rc;
}

/* pool_limit sizes t's session pool from the options and the token's own limit. */
static unsigned pool_limit(const struct uri_ctx *c, const CK_TOKEN_INFO *ti)
{
	unsigned long max = MAX_POOL;
	const char *q = p11_kit_uri_get_vendor_query(c->uri, "max-sessions");

	if (ti->ulMaxSessionCount != CK_EFFECTIVELY_INFINITE &&
	    ti->ulMaxSessionCount != CK_UNAVAILABLE_INFORMATION && ti->ulMaxSessionCount < max)
		max = ti->ulMaxSessionCount;
	if (q != NULL && strtoul(q, NULL, 10) > 0 && strtoul(q, NULL, 10) < max)
		max = strtoul(q, NULL, 10);
	if (c->o->max_sessions > 0 && c->o->max_sessions < max)
		max = c->o->max_sessions;
	/* The anchor session counts against the token's limit; 0 leaves only it (shared). */
	return max > 1 ? (unsigned)max - 1 : 0;
}

/* open_token opens and logs in to the token in slot. */
static int open_token(struct uri_ctx *c, struct module *m, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti,
                      struct kwd_p11_token **out)
{
	struct kwd_p11_token *t = calloc(1, sizeof(*t));
	char rvbuf[32];
	CK_RV rv;
	int rc;

	if (t == NULL)
		return -ENOMEM;
	pthread_mutex_init(&t->lock, NULL);
	pthread_cond_init(&t->cond, NULL);
	pthread_cond_init(&t->anchor_cond, NULL);
	t->slot = slot;
	blank_trim(t->label, ti->label, sizeof(ti->label));
	memcpy(t->serial, ti->serialNumber, sizeof(t->serial));
	t->max = pool_limit(c, ti);
	if ((rc = read_pin(c, t)) != 0)
		goto fail;
	t->mod = module_ref(m);
	if ((ti->flags & CKF_LOGIN_REQUIRED) && t->pin == NULL) {
		fmt_err(c->err, c->errlen,
		        "%s: token %s needs a PIN (pin-value or pin-source in the URI)", c->shown,
		        t->label);
		rc = -KW_ECONFIG;
		goto fail;
	}
	rv = m->fl->C_OpenSession(slot, CKF_SERIAL_SESSION, NULL, NULL, &t->anchor);
	if (rv != CKR_OK) {
		fmt_err(c->err, c->errlen, "%s: cannot open a session on token %s: %s", c->shown,
		        t->label, kwd_p11_rv_name(rv, rvbuf, sizeof(rvbuf)));
		rc = -KW_ECONFIG;
		goto fail;
	}
	t->has_anchor = true;
	if ((rv = login(t, t->anchor)) != CKR_OK) {
		fmt_err(c->err, c->errlen, "%s: login to token %s failed: %s%s", c->shown, t->label,
		        kwd_p11_rv_name(rv, rvbuf, sizeof(rvbuf)),
		        rv == CKR_PIN_INCORRECT ? " (wrong PIN)" : "");
		rc = -KW_ECONFIG;
		goto fail;
	}
	if (t->max == 0) {
		pthread_mutex_lock(&t->lock);
		go_shared(t);
		pthread_mutex_unlock(&t->lock);
	}
	*out = t;
	return 0;
fail:
	token_free(t);
	return rc;
}

/*
 * shared_token returns, with one more reference, the token a live set opened
 * in (m, slot) if it is still the same token and its login session still
 * works (logging in again if the token was reset); NULL otherwise, and a
 * token whose login session failed is not offered again. The URI's PIN and
 * max-sessions apply when a token is first opened, as documented.
 */
static struct kwd_p11_token *shared_token(struct module *m, CK_SLOT_ID slot,
                                          const CK_TOKEN_INFO *ti)
{
	struct kwd_p11_token *t;
	CK_SESSION_INFO si;

	pthread_mutex_lock(&tokens_lock);
	for (t = live_tokens; t != NULL; t = t->next_live)
		if (t->mod == m && t->slot == slot && !t->stale &&
		    memcmp(t->serial, ti->serialNumber, sizeof(t->serial)) == 0)
			break;
	if (t != NULL)
		t->refs++;
	pthread_mutex_unlock(&tokens_lock);
	if (t == NULL)
		return NULL;
	/* A shared token's operations run on the anchor: take a turn. */
	anchor_take(t);
	bool ok = t->has_anchor && m->fl->C_GetSessionInfo(t->anchor, &si) == CKR_OK &&
	          login(t, t->anchor) == CKR_OK;
	anchor_give(t);
	if (ok)
		return t;
	pthread_mutex_lock(&tokens_lock);
	t->stale = true;
	pthread_mutex_unlock(&tokens_lock);
	token_unref(t);
	return NULL;
}

/*
 * token_get returns a token for (m, slot): a live set's (shared_token) or a
 * newly opened one. The URI's PIN is read either way, so a pin-source that
 * went missing or readable by others still fails the load.
 */
static int token_get(struct uri_ctx *c, struct module *m, CK_SLOT_ID slot, const CK_TOKEN_INFO *ti,
                     struct kwd_p11_token **out)
{
	struct kwd_p11_token probe = {0};
	bool pin_ok;
	int rc;

	if ((rc = read_pin(c, &probe)) != 0)
		return rc;
	pin_ok = probe.pin != NULL || !(ti->flags & CKF_LOGIN_REQUIRED);
	if (probe.pin != NULL) {
		OPENSSL_cleanse(probe.pin, probe.pin_len);
		free(probe.pin);
	}
	/* Without a PIN open_token says what is missing. */
	if (pin_ok && (*out = shared_token(m, slot, ti)) != NULL)
		return 0;
	if ((rc = open_token(c, m, slot, ti, out)) != 0)
		return rc;
	pthread_mutex_lock(&tokens_lock);
	(*out)->refs = 1;
	(*out)->next_live = live_tokens;
	live_tokens = *out;
	pthread_mutex_unlock(&tokens_lock);
	return 0;
}

/* find_token returns the set's token for (m, slot) when an earlier URI opened it. */
static struct kwd_p11_token *find_token(struct kwd_p11_set *s, struct module *m, CK_SLOT_ID slot)
{
	for (size_t i = 0; i < s->ntokens; i++)
		if (s->tokens[i]->mod == m && s->tokens[i]->slot == slot)
			return s->tokens[i];
	return NULL;
}

/* load_slots opens every token of m the URI matches and loads their keys. */
static int load_slots(struct uri_ctx *c, struct module *m)
{
	CK_FUNCTION_LIST *fl = m->fl;
	CK_SLOT_ID *slots = NULL, want = p11_kit_uri_get_slot_id(c->uri);
	CK_ULONG nslots = 0;
	char seen[256] = "";
	size_t matched = 0;
	int rc = 0;

	if (fl->C_GetSlotList(CK_TRUE, NULL, &nslots) != CKR_OK ||
	    (slots = calloc(nslots + 1, sizeof(*slots))) == NULL ||
	    fl->C_GetSlotList(CK_TRUE, slots, &nslots) != CKR_OK)
		nslots = 0;
	for (CK_ULONG i = 0; i < nslots && rc == 0; i++) {
		CK_TOKEN_INFO ti;
		CK_SLOT_INFO si;
		char label[33];

		if (fl->C_GetTokenInfo(slots[i], &ti) != CKR_OK ||
		    fl->C_GetSlotInfo(slots[i], &si) != CKR_OK)
			continue;
		blank_trim(label, ti.label, sizeof(ti.label));
		if (!(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		size_t used = strlen(seen);
		snprintf(seen + used, sizeof(seen) - used, "%s%s", used ? ", " : "", label);
		if ((want != (CK_SLOT_ID)-1 && want != slots[i]) ||
		    !p11_kit_uri_match_token_info(c->uri, &ti) ||
		    !p11_kit_uri_match_slot_info(c->uri, &si))
			continue;
		matched++;
		struct kwd_p11_token *t = find_token(c->set, m, slots[i]);
		if (t == NULL) {
			struct kwd_p11_token **nt =
			    realloc(c->set->tokens, (c->set->ntokens + 1) * sizeof(*nt));
			if (nt == NULL) {
				rc = -ENOMEM;
				break;
			}
			c->set->tokens = nt;
			if ((rc = token_get(c, m, slots[i], &ti, &t)) != 0)
				break;
			nt[c->set->ntokens++] = t;
		}
		rc = load_keys(c, t);
	}
	free(slots);
	if (rc == 0 && matched == 0) {
		fmt_err(c->err, c->errlen, "%s: no token matches (tokens present: %s)", c->shown,
		        seen[0] ? seen : "none");
		rc = -KW_ECONFIG;
	}
	if (rc == -ENOMEM)
		fmt_err(c->err, c->errlen, "out of memory");
	return rc;
}

static int load_uri(struct uri_ctx *c, const char *str)
{
	struct module *m = NULL;
	const char *path;
	int rc;

	redact(c->shown, sizeof(c->shown), str);
	if ((c->uri = p11_kit_uri_new()) == NULL)
		return -ENOMEM;
	rc = p11_kit_uri_parse(str, P11_KIT_URI_FOR_ANY, c->uri);
	if (rc != P11_KIT_URI_OK) {
		fmt_err(c->err, c->errlen, "--pkcs11 %s: not a PKCS#11 URI (RFC 7512): %s",
		        c->shown, p11_kit_uri_message(rc));
		rc = -KW_ECONFIG;
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(c->uri)) {
		fmt_err(c->err, c->errlen, "--pkcs11 %s: has attributes PKCS#11 does not define",
		        c->shown);
		rc = -KW_ECONFIG;
		goto out;
	}
	path = p11_kit_uri_get_module_path(c->uri);
	if (path == NULL)
		path = c->o->module;
	if (path == NULL) {
		fmt_err(c->err, c->errlen,
		        "--pkcs11 %s: no PKCS#11 module: pass --pkcs11-module PATH or add "
		        "?module-path=PATH to the URI",
		        c->shown);
		rc = -KW_ECONFIG;
		goto out;
	}
	if ((rc = module_open(path, &m, c->err, c->errlen)) != 0)
		goto out;
	rc = load_slots(c, m);
out:
	module_unref(m); /* the tokens opened hold their own references */
	p11_kit_uri_free(c->uri);
	c->uri = NULL;
	return rc;
}

int kwd_p11_load(const struct kwd_p11_options *o, struct kwd_p11_set **out, char *err,
                 size_t errlen)
{
	/* Loads search objects on shared login sessions: one load at a time. */
	static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
	struct uri_ctx c = {.o = o, .err = err, .errlen = errlen};
	int rc = 0;

	*out = NULL;
	if ((c.set = calloc(1, sizeof(*c.set))) == NULL)
		return -ENOMEM;
	atomic_init(&c.set->refs, 1);
	pthread_mutex_lock(&load_lock);
	for (size_t i = 0; i < o->nuris && rc == 0; i++)
		rc = load_uri(&c, o->uris[i]);
	pthread_mutex_unlock(&load_lock);
	if (rc != 0) {
		set_destroy(c.set); /* on the loading thread: start-up and reload wait anyway */
		return rc;
	}
	*out = c.set;
	return 0;
}

/* ---- operations ---------------------------------------------------------- */

/* DigestInfo prefixes (RFC 8017 §9.2 note 1), by hash length. */
static const uint8_t di_sha1[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e,
                                  0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14};
static const uint8_t di_sha224[] = {0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x04, 0x05, 0x00, 0x04, 0x1c};
static const uint8_t di_sha256[] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20};
static const uint8_t di_sha384[] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0x04, 0x30};
static const uint8_t di_sha512[] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                    0x65, 0x03, 0x04, 0x02, 0x03, 0x05, 0x00, 0x04, 0x40};

/* digest_info returns the prefix for d (len 0 for MD5-SHA1's bare 36 bytes). */
static const uint8_t *digest_info(const struct kw_opcode_desc *d, size_t *len)
{
	*len = 0;
	switch (d->hash_len) {
	case 20:
		*len = sizeof(di_sha1);
		return di_sha1;
	case 28:
		*len = sizeof(di_sha224);
		return di_sha224;
	case 32:
		*len = sizeof(di_sha256);
		return di_sha256;
	case 48:
		*len = sizeof(di_sha384);
		return di_sha384;
	case 64:
		*len = sizeof(di_sha512);
		return di_sha512;
	}
	return NULL; /* 36: MD5-SHA1, signed bare as TLS 1.0/1.1 do */
}

static void pss_params(const struct kw_opcode_desc *d, CK_RSA_PKCS_PSS_PARAMS *p)
{
	p->sLen = d->hash_len; /* salt = hash length, as for file keys */
	switch (d->hash_len) {
	case 48:
		p->hashAlg = CKM_SHA384;
		p->mgf = CKG_MGF1_SHA384;
		break;
	case 64:
		p->hashAlg = CKM_SHA512;
		p->mgf = CKG_MGF1_SHA512;
		break;
	default:
		p->hashAlg = CKM_SHA256;
		p->mgf = CKG_MGF1_SHA256;
	}
}

/* ecdsa_der re-encodes the token's r||s as the DER ECDSA-Sig-Value file keys give. */
static int ecdsa_der(const uint8_t *rs, size_t len, uint8_t *out, size_t cap, size_t *out_len)
{
	ECDSA_SIG *sig = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(rs, (int)(len / 2), NULL);
	BIGNUM *s = BN_bin2bn(rs + len / 2, (int)(len / 2), NULL);
	int rc = -1;

	if (sig == NULL || r == NULL || s == NULL || len % 2 != 0 || ECDSA_SIG_set0(sig, r, s) != 1)
		goto out;
	r = s = NULL; /* owned by sig */
	int n = i2d_ECDSA_SIG(sig, NULL);
	if (n <= 0 || (size_t)n > cap)
		goto out;
	uint8_t *p = out;
	*out_len = (size_t)i2d_ECDSA_SIG(sig, &p);
	rc = 0;
out:
	BN_free(r);
	BN_free(s);
	ECDSA_SIG_free(sig);
	return rc;
}

/* Errors after which the session (or the login) cannot be trusted again. */
static bool rv_session_broken(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_REMOVED || rv == CKR_TOKEN_NOT_PRESENT ||
	       rv == CKR_USER_NOT_LOGGED_IN || rv == CKR_DEVICE_ERROR ||
	       rv == CKR_OPERATION_ACTIVE || rv == CKR_GENERAL_ERROR;
}

/* The token refused this input, not the operation as such: a crypto error. */
static bool rv_input(CK_RV rv)
{
	return rv == CKR_DATA_INVALID || rv == CKR_DATA_LEN_RANGE ||
	       rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
	       rv == CKR_FUNCTION_FAILED || rv == CKR_KEY_TYPE_INCONSISTENT ||
	       rv == CKR_KEY_FUNCTION_NOT_PERMITTED || rv == CKR_MECHANISM_INVALID ||
	       rv == CKR_MECHANISM_PARAM_INVALID;
}

/* op runs one sign/decrypt on session s; CKR_* with the raw token output in out. */
static CK_RV op(const struct kwd_p11_key *key, CK_SESSION_HANDLE s, const struct kw_opcode_desc *d,
                const uint8_t *in, size_t in_len, uint8_t *out, size_t cap, size_t *out_len)
{
	CK_FUNCTION_LIST *fl = key->token->mod->fl;
	CK_MECHANISM mech = {CKM_RSA_PKCS, NULL, 0};
	CK_RSA_PKCS_PSS_PARAMS pss;
	uint8_t buf[KW_RESULT_MAX];
	CK_ULONG n = cap;
	const uint8_t *msg = in;
	size_t msg_len = in_len, pre_len;
	CK_RV rv;

	switch (d->alg) {
	case KW_ALG_RSA_DECRYPT: {
		/* A ciphertext shorter than k bytes is the same integer, left-padded. */
		size_t k = (key->bits + 7) / 8;
		if (in_len > k || k > sizeof(buf) || k > cap)
			return CKR_ENCRYPTED_DATA_LEN_RANGE;
		memset(buf, 0, k - in_len);
		memcpy(buf + (k - in_len), in, in_len);
		/* c >= n is the client's error; tokens answer it with anything up to
		 * CKR_GENERAL_ERROR, so it is refused here, as OpenSSL does for file keys. */
		if (key->modulus == NULL || memcmp(buf, key->modulus, k) >= 0) {
			OPENSSL_cleanse(buf, k);
			return CKR_ENCRYPTED_DATA_INVALID;
		}
		mech.mechanism = CKM_RSA_X_509;
		if ((rv = fl->C_DecryptInit(s, &mech, key->handle)) != CKR_OK)
			return rv;
		rv = fl->C_Decrypt(s, buf, k, out, &n);
		OPENSSL_cleanse(buf, k);
		if (rv == CKR_OK && n < k) { /* a token may drop leading zeros */
			memmove(out + (k - n), out, n);
			memset(out, 0, k - n);
			n = k;
		}
		*out_len = n;
		return rv;
	}
	case KW_ALG_RSA_PKCS1: {
		const uint8_t *pre = digest_info(d, &pre_len);
		if (pre_len + in_len > sizeof(buf))
			return CKR_DATA_LEN_RANGE;
		if (pre != NULL)
			memcpy(buf, pre, pre_len);
		memcpy(buf + pre_len, in, in_len);
		msg = buf;
		msg_len = pre_len + in_len;
		break;
	}
	case KW_ALG_RSA_PSS:
		pss_params(d, &pss);
		mech = (CK_MECHANISM){CKM_RSA_PKCS_PSS, &pss, sizeof(pss)};
		break;
	case KW_ALG_ECDSA:
		mech.mechanism = CKM_ECDSA;
		n = sizeof(buf);
		break;
	case KW_ALG_ED25519:
		mech.mechanism = CKM_EDDSA;
		break;
	}
	if ((rv = fl->C_SignInit(s, &mech, key->handle)) != CKR_OK)
		return rv;
	if (d->alg == KW_ALG_ECDSA) {
		rv = fl->C_Sign(s, (CK_BYTE *)msg, msg_len, buf, &n);
		if (rv == CKR_OK && ecdsa_der(buf, n, out, cap, out_len) != 0)
			rv = CKR_FUNCTION_FAILED;
		return rv;
	}
	rv = fl->C_Sign(s, (CK_BYTE *)msg, msg_len, out, &n);
	*out_len = n;
	return rv;
}

enum kw_proto_error kwd_p11_run(const struct kwd_p11_key *key, const struct kw_opcode_desc *d,
                                const uint8_t *in, size_t in_len, uint8_t *out, size_t out_cap,
                                size_t *out_len)
{
	static const uint8_t empty[1];
	struct kwd_p11_token *t = key->token;
	CK_SESSION_HANDLE s;
	CK_RV rv;

	*out_len = 0;
	if (in == NULL)
		in = empty;
	if ((rv = session_get(t, &s)) != CKR_OK)
		return KW_ERR_INTERNAL;
	rv = op(key, s, d, in, in_len, out, out_cap, out_len);
	if (rv == CKR_USER_NOT_LOGGED_IN)
		login(t, s); /* the token was reset: log in again for the next request */
	session_put(t, s, rv_session_broken(rv));
	if (rv == CKR_OK)
		return KW_ERR_NONE;
	OPENSSL_cleanse(out, out_cap);
	*out_len = 0;
	return rv_input(rv) ? KW_ERR_CRYPTO : KW_ERR_INTERNAL;
}
