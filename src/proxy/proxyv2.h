/*
 * proxyv2.h - the PROXY protocol version 2 header keyway-proxy sends first
 * to its upstream (--send-proxy-v2), as HAProxy's proxy-protocol.txt
 * defines it. A pure function: no sockets, no SSL.
 */
#ifndef KPX_PROXYV2_H
#define KPX_PROXYV2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define KPX_PP2_SIG "\r\n\r\n\0\r\nQUIT\n" /* 12 bytes */
#define KPX_PP2_SIG_LEN 12
#define KPX_PP2_VER_PROXY 0x21 /* version 2, command PROXY */
#define KPX_PP2_FAM_UNSPEC 0x00
#define KPX_PP2_FAM_TCP4 0x11
#define KPX_PP2_FAM_TCP6 0x21
#define KPX_PP2_FAM_UDP4 0x12
#define KPX_PP2_FAM_UDP6 0x22
#define KPX_PP2_TYPE_ALPN 0x01
#define KPX_PP2_TYPE_AUTHORITY 0x02
#define KPX_PP2_TYPE_SSL 0x20
#define KPX_PP2_SUBTYPE_SSL_VERSION 0x21
#define KPX_PP2_SUBTYPE_SSL_CIPHER 0x23
#define KPX_PP2_CLIENT_SSL 0x01

/* The largest header kpx_pp2_build can make with 255-byte strings. */
#define KPX_PP2_MAX 1200

struct kpx_pp2_info {
	const struct sockaddr *src; /* the client (AF_INET or AF_INET6; else UNSPEC is sent) */
	const struct sockaddr *dst; /* the proxy's address the client connected to */
	const char *tls_version;    /* e.g. "TLSv1.3"; NULL: no SSL TLV */
	const char *cipher;         /* e.g. "TLS_AES_128_GCM_SHA256"; NULL: no cipher sub-TLV */
	const char *sni;            /* the client's server name; NULL: no AUTHORITY TLV */
	const unsigned char *alpn;  /* the negotiated protocol; NULL: no ALPN TLV */
	size_t alpn_len;
	bool udp; /* the client came over UDP (QUIC): transport 2, family 0x12 or 0x22 */
};

/*
 * kpx_pp2_build writes the header (signature, 0x21, family, length,
 * addresses, TLVs) to out; returns its length, or -ENOSPC when cap is too
 * small, -EINVAL when a string is longer than 255 bytes.
 */
int kpx_pp2_build(uint8_t *out, size_t cap, const struct kpx_pp2_info *in);

#endif
