/*
 * fuzz_proxyv2.c - libFuzzer harness for the PROXY v2 header writer. The
 * input chooses the endpoints (IPv4, IPv6, another family or none), the
 * TLS version, cipher, server name and ALPN (up to 300 bytes each, so the
 * 255-byte limit is crossed) and the room given to the writer. Whatever
 * kpx_pp2_build writes is read back by a parser written here from the
 * specification (HAProxy's proxy-protocol.txt), which must find exactly
 * the addresses and TLVs that went in; a refusal must be the documented one.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "proxyv2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define STR_MAX 300 /* longer than the 255 bytes a TLV may hold */

/* The input, consumed front to back; reads past its end give zeros. */
struct input {
	const uint8_t *p;
	size_t len;
};

static void take(struct input *in, void *out, size_t n)
{
	size_t k = n < in->len ? n : in->len;
	memset(out, 0, n);
	memcpy(out, in->p, k);
	in->p += k;
	in->len -= k;
}

static unsigned take8(struct input *in)
{
	uint8_t b;
	take(in, &b, 1);
	return b;
}

static unsigned take16(struct input *in)
{
	uint8_t b[2];
	take(in, b, 2);
	return (unsigned)b[0] << 8 | b[1];
}

/* An endpoint of the family the low two bits of kind name (3: none). */
static const struct sockaddr *endpoint(struct input *in, unsigned kind, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	switch (kind & 3) {
	case 0: {
		struct sockaddr_in *s = (struct sockaddr_in *)ss;
		s->sin_family = AF_INET;
		take(in, &s->sin_addr, 4);
		take(in, &s->sin_port, 2);
		break;
	}
	case 1: {
		struct sockaddr_in6 *s = (struct sockaddr_in6 *)ss;
		s->sin6_family = AF_INET6;
		take(in, &s->sin6_addr, 16);
		take(in, &s->sin6_port, 2);
		break;
	}
	case 2:
		ss->ss_family = AF_UNIX;
		break;
	default:
		return NULL;
	}
	return (const struct sockaddr *)ss;
}

/* A string of the input: length (0..STR_MAX), then its bytes; NUL-terminated. */
static size_t take_str(struct input *in, char s[STR_MAX + 1])
{
	size_t n = take16(in) % (STR_MAX + 1);
	take(in, s, n);
	s[n] = '\0';
	return n;
}

/* What the reader found. */
struct found {
	unsigned fam;
	uint8_t src[16], dst[16], sport[2], dport[2];
	const uint8_t *alpn, *sni, *version, *cipher;
	size_t alpn_len, sni_len, version_len, cipher_len;
	bool ssl;
};

static unsigned be16(const uint8_t *p)
{
	return (unsigned)p[0] << 8 | p[1];
}

/* sub_tlvs reads the SSL TLV's sub-TLVs (version, then cipher) from p[0..n). */
static void sub_tlvs(const uint8_t *p, size_t n, struct found *f)
{
	while (n > 0) {
		if (n < 3 || be16(p + 1) > n - 3)
			abort();
		size_t vlen = be16(p + 1);
		if (p[0] == KPX_PP2_SUBTYPE_SSL_VERSION && f->version == NULL) {
			f->version = p + 3;
			f->version_len = vlen;
		} else if (p[0] == KPX_PP2_SUBTYPE_SSL_CIPHER && f->cipher == NULL) {
			f->cipher = p + 3;
			f->cipher_len = vlen;
		} else {
			abort(); /* unknown or repeated */
		}
		p += 3 + vlen;
		n -= 3 + vlen;
	}
}

/* read_header parses h[0..n) completely, aborting on anything malformed. */
static void read_header(const uint8_t *h, size_t n, struct found *f)
{
	memset(f, 0, sizeof(*f));
	if (n < 16 || memcmp(h, "\r\n\r\n\0\r\nQUIT\n", 12) != 0 || h[12] != 0x21)
		abort();
	if (be16(h + 14) != n - 16)
		abort();
	f->fam = h[13];
	const uint8_t *p = h + 16;
	size_t left = n - 16, alen = f->fam == 0x11 ? 4 : f->fam == 0x21 ? 16 : 0;
	if (f->fam != 0x11 && f->fam != 0x21 && f->fam != 0x00)
		abort();
	if (alen > 0) {
		if (left < 2 * alen + 4)
			abort();
		memcpy(f->src, p, alen);
		memcpy(f->dst, p + alen, alen);
		memcpy(f->sport, p + 2 * alen, 2);
		memcpy(f->dport, p + 2 * alen + 2, 2);
		p += 2 * alen + 4;
		left -= 2 * alen + 4;
	}
	while (left > 0) {
		if (left < 3 || be16(p + 1) > left - 3)
			abort();
		size_t vlen = be16(p + 1);
		const uint8_t *v = p + 3;
		if (p[0] == 0x01 && f->alpn == NULL && vlen > 0) {
			f->alpn = v;
			f->alpn_len = vlen;
		} else if (p[0] == 0x02 && f->sni == NULL) {
			f->sni = v;
			f->sni_len = vlen;
		} else if (p[0] == 0x20 && !f->ssl) {
			/* client: SSL only; verify: non-zero (no client certificate) */
			if (vlen < 5 || v[0] != 0x01 || be16(v + 1) != 0 || be16(v + 3) != 1)
				abort();
			f->ssl = true;
			sub_tlvs(v + 5, vlen - 5, f);
			if (f->version == NULL)
				abort();
		} else {
			abort();
		}
		p += 3 + vlen;
		left -= 3 + vlen;
	}
}

static bool same(const uint8_t *got, size_t got_len, const void *want, size_t want_len)
{
	return got != NULL && got_len == want_len && memcmp(got, want, want_len) == 0;
}

/* expect_addresses checks the address block against the endpoints given. */
static void expect_addresses(const struct found *f, const struct sockaddr *src,
                             const struct sockaddr *dst)
{
	int fam = src != NULL && dst != NULL && src->sa_family == dst->sa_family ? src->sa_family
	                                                                         : AF_UNSPEC;
	if (fam == AF_INET) {
		const struct sockaddr_in *s = (const void *)src, *d = (const void *)dst;
		if (f->fam != 0x11 || memcmp(f->src, &s->sin_addr, 4) != 0 ||
		    memcmp(f->dst, &d->sin_addr, 4) != 0 ||
		    memcmp(f->sport, &s->sin_port, 2) != 0 ||
		    memcmp(f->dport, &d->sin_port, 2) != 0)
			abort();
	} else if (fam == AF_INET6) {
		const struct sockaddr_in6 *s = (const void *)src, *d = (const void *)dst;
		if (f->fam != 0x21 || memcmp(f->src, &s->sin6_addr, 16) != 0 ||
		    memcmp(f->dst, &d->sin6_addr, 16) != 0 ||
		    memcmp(f->sport, &s->sin6_port, 2) != 0 ||
		    memcmp(f->dport, &d->sin6_port, 2) != 0)
			abort();
	} else if (f->fam != 0x00) {
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct input in = {data, size};
	struct sockaddr_storage ss_src, ss_dst;
	char version[STR_MAX + 1], cipher[STR_MAX + 1], sni[STR_MAX + 1];
	uint8_t alpn[STR_MAX + 1];
	struct found f;

	unsigned flags = take8(&in);
	size_t cap = flags & 0x80 ? KPX_PP2_MAX : take16(&in) % (KPX_PP2_MAX + 1);
	const struct sockaddr *src = endpoint(&in, flags, &ss_src);
	const struct sockaddr *dst = endpoint(&in, flags >> 2, &ss_dst);
	take_str(&in, version);
	take_str(&in, cipher);
	take_str(&in, sni);
	size_t alen = take_str(&in, (char *)alpn);
	struct kpx_pp2_info info = {
	    .src = src,
	    .dst = dst,
	    .tls_version = flags & 0x10 ? version : NULL,
	    .cipher = flags & 0x20 ? cipher : NULL,
	    .sni = flags & 0x40 ? sni : NULL,
	    .alpn = alen > 0 || (flags & 0x01) ? alpn : NULL,
	    .alpn_len = alen,
	};
	/* The strings the writer measures with strlen stop at their first NUL. */
	size_t vlen = strlen(version), clen = strlen(cipher), slen = strlen(sni);

	/* Exactly cap bytes, so a write past them is caught. */
	uint8_t *out = malloc(cap > 0 ? cap : 1);
	if (out == NULL)
		abort();
	int rc = kpx_pp2_build(out, cap, &info);
	bool too_long = (info.tls_version && vlen > 255) ||
	                (info.tls_version && info.cipher && clen > 255) ||
	                (info.sni && slen > 255) || (info.alpn && alen > 255);
	if (too_long) {
		if (rc != -EINVAL && rc != -ENOSPC)
			abort();
		/* With room for the largest header the verdict is the length. */
		if (cap >= KPX_PP2_MAX && rc != -EINVAL)
			abort();
		free(out);
		return 0;
	}
	if (rc == -ENOSPC) {
		if (cap >= KPX_PP2_MAX)
			abort(); /* KPX_PP2_MAX is enough for any header */
		free(out);
		return 0;
	}
	if (rc < 16 || (size_t)rc > cap)
		abort();
	read_header(out, (size_t)rc, &f);
	expect_addresses(&f, src, dst);
	if (info.alpn != NULL && alen > 0 ? !same(f.alpn, f.alpn_len, alpn, alen) : f.alpn != NULL)
		abort();
	if (info.sni != NULL ? !same(f.sni, f.sni_len, sni, slen) : f.sni != NULL)
		abort();
	if (info.tls_version == NULL ? f.ssl
	                             : !f.ssl || !same(f.version, f.version_len, version, vlen))
		abort();
	if (info.tls_version != NULL &&
	    (info.cipher != NULL ? !same(f.cipher, f.cipher_len, cipher, clen) : f.cipher != NULL))
		abort();
	free(out);
	return 0;
}
