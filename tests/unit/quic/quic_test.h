/*
 * quic_test.h - helpers of the QUIC unit tests: hex, the RFC 9001 Appendix A
 * vectors of rfc9001_vectors.txt, and the engines this build and CPU have.
 */
#ifndef KEYWAY_TEST_QUIC_H
#define KEYWAY_TEST_QUIC_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "keyway/quic.h"

static const char *const test_engines[] = {"evp", "ipsec-mb", NULL};

/* unhex decodes hex into out (room for max bytes); returns the length or -1. */
static inline int unhex(uint8_t *out, size_t max, const char *hex)
{
	size_t n = strlen(hex);
	if (n % 2 || n / 2 > max)
		return -1;
	for (size_t i = 0; i < n / 2; i++) {
		unsigned v;
		if (sscanf(hex + 2 * i, "%2x", &v) != 1)
			return -1;
		out[i] = (uint8_t)v;
	}
	return (int)(n / 2);
}

/* vec_text finds name in the vectors file and returns its value (static storage) or NULL. */
static inline const char *vec_text(const char *name)
{
	static char line[4096];
	char path[512];
	const char *dir = getenv("KW_TEST_DATA"), *val = NULL;

	snprintf(path, sizeof(path), "%s/unit/quic/rfc9001_vectors.txt", dir ? dir : "tests");
	FILE *f = fopen(path, "r");
	size_t nl = strlen(name);
	while (f != NULL && val == NULL && fgets(line, sizeof(line), f) != NULL)
		if (strncmp(line, name, nl) == 0 && line[nl] == '=') {
			line[strcspn(line, "\n")] = 0;
			val = line + nl + 1;
		}
	if (f != NULL)
		fclose(f);
	if (val == NULL)
		fprintf(stderr, "no vector %s in %s\n", name, path);
	return val;
}

/* vec decodes the hex vector name into out; returns its length or -1. */
static inline int vec(const char *name, uint8_t *out, size_t max)
{
	const char *v = vec_text(name);
	return v != NULL ? unhex(out, max, v) : -1;
}

/* vec_u64 reads a decimal vector. */
static inline unsigned long long vec_u64(const char *name)
{
	const char *v = vec_text(name);
	return v != NULL ? strtoull(v, NULL, 10) : 0;
}

#endif
