/* rsa_mb.c - placeholder: the OpenSSL path only until the IFMA kernel lands. */
#include "rsa_mb.h"

#include <errno.h>

unsigned kw_mb_limbs(unsigned bits)
{
	return bits == 2048 ? 20 : 0;
}

bool kw_mb_cpu_ok(void)
{
	return false;
}

struct kw_mb_key {
	int unused;
};

static struct kw_mb_key placeholder;

int kw_mb_key_new(struct kw_mb_key **out, unsigned bits, const BIGNUM *p, const BIGNUM *q,
                  const BIGNUM *dp, const BIGNUM *dq, const BIGNUM *qinv)
{
	*out = &placeholder;
	return 0;
}

void kw_mb_key_free(struct kw_mb_key *k)
{
}

void kw_mb_rsa_private(const struct kw_mb_key *const *keys, uint8_t *const *buf, size_t n)
{
}
