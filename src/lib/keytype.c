/* keytype.c - key types (see keyway/keytype.h). */
#include "keyway/keytype.h"

int kw_key_type_of(const EVP_PKEY *pkey)
{
	if (pkey == NULL)
		return 0;
	switch (EVP_PKEY_get_base_id(pkey)) {
	case EVP_PKEY_RSA:
		return KW_KEY_RSA;
	case EVP_PKEY_EC:
		return KW_KEY_EC;
	case EVP_PKEY_ED25519:
		return KW_KEY_ED25519;
	}
	/* Keys held by another provider have no legacy id; ask by name. */
	if (EVP_PKEY_is_a(pkey, "RSA"))
		return KW_KEY_RSA;
	if (EVP_PKEY_is_a(pkey, "EC"))
		return KW_KEY_EC;
	if (EVP_PKEY_is_a(pkey, "ED25519"))
		return KW_KEY_ED25519;
	return 0;
}

const char *kw_key_type_name(int type)
{
	switch (type) {
	case KW_KEY_RSA:
		return "RSA";
	case KW_KEY_EC:
		return "EC";
	case KW_KEY_ED25519:
		return "ED25519";
	default:
		return "?";
	}
}
