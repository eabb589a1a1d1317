/* test_keytype.c - key types of real keys, and their names. */
#include <string.h>

#include <openssl/evp.h>

#include "check.h"
#include "keyway/keytype.h"

int main(void)
{
	EVP_PKEY *rsa = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)2048);
	EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	EVP_PKEY *ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	EVP_PKEY *x = EVP_PKEY_Q_keygen(NULL, NULL, "X25519");
	CHECK_EQ(kw_key_type_of(rsa), KW_KEY_RSA);
	CHECK_EQ(kw_key_type_of(ec), KW_KEY_EC);
	CHECK_EQ(kw_key_type_of(ed), KW_KEY_ED25519);
	CHECK_EQ(kw_key_type_of(x), 0);
	CHECK_EQ(kw_key_type_of(NULL), 0);
	CHECK(strcmp(kw_key_type_name(KW_KEY_RSA), "RSA") == 0);
	CHECK(strcmp(kw_key_type_name(KW_KEY_EC), "EC") == 0);
	CHECK(strcmp(kw_key_type_name(KW_KEY_ED25519), "ED25519") == 0);
	CHECK(strcmp(kw_key_type_name(0), "?") == 0);
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(x);
	CHECK_DONE();
}
