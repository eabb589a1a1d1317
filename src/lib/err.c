/* err.c - descriptions of the error codes (see keyway/err.h). */
#include "keyway/err.h"

#include <string.h>

const char *kw_strerror(int err)
{
	if (err < 0)
		err = -err;
	switch (err) {
	case KW_EPROTO:
		return "malformed keyless message";
	case KW_ETLS:
		return "TLS failure";
	case KW_ECRYPTO:
		return "cryptographic operation failed";
	case KW_ENOKEY:
		return "key not found";
	case KW_ETIMEOUT:
		return "timed out";
	case KW_ECLOSED:
		return "connection closed by peer";
	case KW_ECONFIG:
		return "bad configuration";
	case KW_EREMOTE:
		return "keyserver returned an error";
	case KW_ECANCELED:
		return "operation canceled";
	default:
		if (err > 0 && err < KW_EBASE)
			return strerror(err);
		return "unknown error";
	}
}
