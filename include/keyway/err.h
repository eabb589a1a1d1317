/*
 * keyway/err.h - the one error convention of libkeyway and its programs.
 *
 * Every internal function returns 0 (or a non-negative count) on success and
 * a negative code on failure: either -errno (-EAGAIN, -ENOMEM, -EINVAL, ...)
 * or -KW_E* for conditions errno cannot name. KW_E* values start above every
 * errno value so the two never collide. OpenSSL's 1/0 convention appears only
 * at the OpenSSL boundary (provider dispatch, SSL callbacks).
 */
#ifndef KEYWAY_ERR_H
#define KEYWAY_ERR_H

enum {
	KW_EBASE = 4096,
	KW_EPROTO,    /* malformed keyless frame: the connection must close */
	KW_ETLS,      /* TLS failure (handshake, certificate, record layer) */
	KW_ECRYPTO,   /* a cryptographic operation failed */
	KW_ENOKEY,    /* no key with that identifier */
	KW_ETIMEOUT,  /* an operation's deadline passed */
	KW_ECLOSED,   /* the peer closed the connection */
	KW_ECONFIG,   /* bad configuration */
	KW_EREMOTE,   /* the keyserver answered with an error (see kw_err_remote) */
	KW_ECANCELED, /* the operation was abandoned before completing */
	KW_ELAST
};

/* kw_strerror returns a static description of a negative code (-errno or -KW_E*). */
const char *kw_strerror(int err);

#endif
