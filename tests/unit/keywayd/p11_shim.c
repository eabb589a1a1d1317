/*
 * p11_shim.c - a PKCS#11 module in front of a real one (SoftHSM2), for the
 * token behaviours SoftHSM2 does not show: a session limit (C_OpenSession
 * answers CKR_SESSION_COUNT past KW_SHIM_MAX_SESSIONS open sessions) and a
 * failing device (C_Sign answers CKR_DEVICE_ERROR while kw_shim_fail is set)
 * and a slow one (C_Sign takes KW_SHIM_SIGN_DELAY_US longer).
 * The real module's path is KW_SHIM_REAL. The test reads the counters
 * through dlsym on this module.
 */
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST *real;
static CK_FUNCTION_LIST shim;
static atomic_int open_now;

/* Read by the test. */
atomic_int kw_shim_open_max;
atomic_int kw_shim_count_refusals;
atomic_int kw_shim_fail;

static CK_RV shim_open(CK_SLOT_ID slot, CK_FLAGS flags, void *app, CK_NOTIFY notify,
                       CK_SESSION_HANDLE *out)
{
	const char *max = getenv("KW_SHIM_MAX_SESSIONS");
	int n = atomic_fetch_add(&open_now, 1) + 1;
	if (max != NULL && n > atoi(max)) {
		atomic_fetch_sub(&open_now, 1);
		atomic_fetch_add(&kw_shim_count_refusals, 1);
		return CKR_SESSION_COUNT;
	}
	CK_RV rv = real->C_OpenSession(slot, flags, app, notify, out);
	if (rv != CKR_OK) {
		atomic_fetch_sub(&open_now, 1);
		return rv;
	}
	int seen = atomic_load(&kw_shim_open_max);
	while (n > seen && !atomic_compare_exchange_weak(&kw_shim_open_max, &seen, n))
		;
	return rv;
}

static CK_RV shim_close(CK_SESSION_HANDLE s)
{
	CK_RV rv = real->C_CloseSession(s);
	if (rv == CKR_OK)
		atomic_fetch_sub(&open_now, 1);
	return rv;
}

static CK_RV shim_sign(CK_SESSION_HANDLE s, CK_BYTE *in, CK_ULONG in_len, CK_BYTE *out,
                       CK_ULONG *out_len)
{
	const char *delay = getenv("KW_SHIM_SIGN_DELAY_US");
	if (delay != NULL)
		usleep((useconds_t)atoi(delay));
	if (atomic_load(&kw_shim_fail)) {
		/* What a failing device does: the operation ends, the session is suspect. */
		CK_BYTE buf[1024];
		CK_ULONG n = sizeof(buf);
		real->C_Sign(s, in, in_len, buf, &n);
		return CKR_DEVICE_ERROR;
	}
	return real->C_Sign(s, in, in_len, out, out_len);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST **out)
{
	if (real == NULL) {
		const char *path = getenv("KW_SHIM_REAL");
		void *dl = path != NULL ? dlopen(path, RTLD_NOW | RTLD_LOCAL) : NULL;
		CK_C_GetFunctionList get = NULL;
		if (dl != NULL)
			*(void **)&get = dlsym(dl, "C_GetFunctionList");
		if (get == NULL || get(&real) != CKR_OK)
			return CKR_GENERAL_ERROR;
		shim = *real;
		shim.C_OpenSession = shim_open;
		shim.C_CloseSession = shim_close;
		shim.C_Sign = shim_sign;
	}
	*out = &shim;
	return CKR_OK;
}
