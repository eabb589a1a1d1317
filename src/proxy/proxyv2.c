/*
 * proxyv2.c - the PROXY protocol v2 header (see proxyv2.h).
 *
 * Layout: 12-byte signature, version/command, family/transport, a 16-bit
 * big-endian length of what follows, the address block (IPv4: 4+4+2+2,
 * IPv6: 16+16+2+2, source first), then TLVs (type, 16-bit length, value).
 * The SSL TLV holds a client flags byte, a 32-bit verify result and
 * sub-TLVs. verify is non-zero here: the spec makes zero mean "the client
 * presented a certificate and it was verified", and keyway-proxy asks for
 * no client certificates.
 */
#include "proxyv2.h"

#include <errno.h>
#include <string.h>
#include <netinet/in.h>

struct out {
	uint8_t *p;
	size_t len, cap;
	int err;
};

static void put(struct out *o, const void *p, size_t n)
{
	if (o->err != 0)
		return;
	if (n > o->cap - o->len) {
		o->err = -ENOSPC;
		return;
	}
	memcpy(o->p + o->len, p, n);
	o->len += n;
}

static void put8(struct out *o, unsigned v)
{
	uint8_t b = (uint8_t)v;
	put(o, &b, 1);
}

static void put16(struct out *o, unsigned v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	put(o, b, 2);
}

static void tlv(struct out *o, unsigned type, const void *v, size_t n)
{
	if (n > 255) {
		o->err = o->err != 0 ? o->err : -EINVAL;
		return;
	}
	put8(o, type);
	put16(o, (unsigned)n);
	put(o, v, n);
}

/* addresses writes the address block; returns the family byte. */
static unsigned addresses(struct out *o, const struct sockaddr *src, const struct sockaddr *dst)
{
	if (src != NULL && dst != NULL && src->sa_family == AF_INET && dst->sa_family == AF_INET) {
		const struct sockaddr_in *s = (const struct sockaddr_in *)src;
		const struct sockaddr_in *d = (const struct sockaddr_in *)dst;
		put(o, &s->sin_addr.s_addr, 4); /* already network order */
		put(o, &d->sin_addr.s_addr, 4);
		put(o, &s->sin_port, 2);
		put(o, &d->sin_port, 2);
		return KPX_PP2_FAM_TCP4;
	}
	if (src != NULL && dst != NULL && src->sa_family == AF_INET6 &&
	    dst->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s = (const struct sockaddr_in6 *)src;
		const struct sockaddr_in6 *d = (const struct sockaddr_in6 *)dst;
		put(o, s->sin6_addr.s6_addr, 16);
		put(o, d->sin6_addr.s6_addr, 16);
		put(o, &s->sin6_port, 2);
		put(o, &d->sin6_port, 2);
		return KPX_PP2_FAM_TCP6;
	}
	/* Mixed or other families: UNSPEC, and the receiver uses the real endpoints. */
	return KPX_PP2_FAM_UNSPEC;
}

int kpx_pp2_build(uint8_t *out, size_t cap, const struct kpx_pp2_info *in)
{
	struct out o = {.p = out, .cap = cap};

	put(&o, KPX_PP2_SIG, KPX_PP2_SIG_LEN);
	put8(&o, KPX_PP2_VER_PROXY);
	put8(&o, 0);  /* family, filled in below */
	put16(&o, 0); /* length, filled in below */
	size_t body = o.len;
	unsigned fam = addresses(&o, in->src, in->dst);
	if (in->udp && fam != KPX_PP2_FAM_UNSPEC)
		fam = (fam & 0xf0) | 0x02; /* the same address family, transport DGRAM */
	if (in->alpn != NULL && in->alpn_len > 0)
		tlv(&o, KPX_PP2_TYPE_ALPN, in->alpn, in->alpn_len);
	if (in->sni != NULL)
		tlv(&o, KPX_PP2_TYPE_AUTHORITY, in->sni, strlen(in->sni));
	if (in->tls_version != NULL) {
		size_t vlen = strlen(in->tls_version);
		size_t clen = in->cipher != NULL ? strlen(in->cipher) : 0;
		if (vlen > 255 || clen > 255)
			return -EINVAL;
		size_t n = 1 + 4 + 3 + vlen + (in->cipher != NULL ? 3 + clen : 0);
		put8(&o, KPX_PP2_TYPE_SSL);
		put16(&o, (unsigned)n);
		put8(&o, KPX_PP2_CLIENT_SSL);
		put16(&o, 0); /* verify: 1, no client certificate (see above) */
		put16(&o, 1);
		tlv(&o, KPX_PP2_SUBTYPE_SSL_VERSION, in->tls_version, vlen);
		if (in->cipher != NULL)
			tlv(&o, KPX_PP2_SUBTYPE_SSL_CIPHER, in->cipher, clen);
	}
	if (o.err != 0)
		return o.err;
	size_t len = o.len - body;
	out[KPX_PP2_SIG_LEN + 1] = (uint8_t)fam;
	out[KPX_PP2_SIG_LEN + 2] = (uint8_t)(len >> 8);
	out[KPX_PP2_SIG_LEN + 3] = (uint8_t)len;
	return (int)o.len;
}
