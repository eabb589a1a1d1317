/*
 * rsa_mb_vec.h - the eight-lane vector layer the RSA kernel is written
 * against, in two implementations with identical semantics:
 *
 *   - AVX-512 IFMA intrinsics (the product),
 *   - with KW_MB_EMULATE, plain C on eight uint64_t (the constant-time test:
 *     Valgrind cannot execute AVX-512, but it runs this, and the kernel's
 *     control flow and memory addresses are the same in both).
 *
 * Vectors live in memory as uint64_t[8] (lane i at index i, 64-byte aligned),
 * so both builds touch the same addresses. The emulation never branches on
 * a lane's value: comparisons are arithmetic masks.
 */
#ifndef KEYWAY_RSA_MB_VEC_H
#define KEYWAY_RSA_MB_VEC_H

#include <stdint.h>

#define MB_MASK52 ((uint64_t)0xfffffffffffff)

#ifdef KW_MB_EMULATE

typedef struct {
	uint64_t l[8];
} vec;

#define MB_VOP(expr)                                                                               \
	vec r_;                                                                                    \
	for (int i_ = 0; i_ < 8; i_++)                                                             \
		r_.l[i_] = (expr);                                                                 \
	return r_

static inline vec v_load(const uint64_t *p)
{
	MB_VOP(p[i_]);
}
static inline void v_store(uint64_t *p, vec a)
{
	for (int i = 0; i < 8; i++)
		p[i] = a.l[i];
}
static inline vec v_set1(uint64_t x)
{
	MB_VOP(x);
}
static inline vec v_zero(void)
{
	return v_set1(0);
}
static inline vec v_add(vec a, vec b)
{
	MB_VOP(a.l[i_] + b.l[i_]);
}
static inline vec v_sub(vec a, vec b)
{
	MB_VOP(a.l[i_] - b.l[i_]);
}
static inline vec v_and(vec a, vec b)
{
	MB_VOP(a.l[i_] & b.l[i_]);
}
static inline vec v_or(vec a, vec b)
{
	MB_VOP(a.l[i_] | b.l[i_]);
}
static inline vec v_xor(vec a, vec b)
{
	MB_VOP(a.l[i_] ^ b.l[i_]);
}
static inline vec v_srli(vec a, int n)
{
	MB_VOP(a.l[i_] >> n);
}
static inline vec v_slli(vec a, int n)
{
	MB_VOP(a.l[i_] << n);
}
/* Arithmetic shift: the compilers Keyway supports shift signed values arithmetically. */
static inline vec v_srai(vec a, int n)
{
	MB_VOP((uint64_t)((int64_t)a.l[i_] >> n));
}
/* acc + low 52 bits of (a mod 2^52) * (b mod 2^52), as vpmadd52luq. */
static inline vec v_madd52lo(vec acc, vec a, vec b)
{
	MB_VOP(acc.l[i_] + (((a.l[i_] & MB_MASK52) * (b.l[i_] & MB_MASK52)) & MB_MASK52));
}
/* acc + high 52 bits of the 104-bit product, as vpmadd52huq. */
static inline vec v_madd52hi(vec acc, vec a, vec b)
{
	MB_VOP(
	    acc.l[i_] +
	    (uint64_t)(((unsigned __int128)(a.l[i_] & MB_MASK52) * (b.l[i_] & MB_MASK52)) >> 52));
}
/* All ones in the lanes where a == b, without a comparison: (x | -x) has bit 63 set iff x != 0. */
static inline vec v_eqmask(vec a, vec b)
{
	MB_VOP((((a.l[i_] ^ b.l[i_]) | (0 - (a.l[i_] ^ b.l[i_]))) >> 63) - 1);
}
/* mask ? a : b, lane by lane (mask lanes all ones or all zeros). */
static inline vec v_select(vec mask, vec a, vec b)
{
	MB_VOP((mask.l[i_] & a.l[i_]) | (~mask.l[i_] & b.l[i_]));
}
#else /* AVX-512 IFMA */

#include <immintrin.h>

typedef __m512i vec;

#define v_load(p) _mm512_load_si512((const void *)(p))
#define v_store(p, a) _mm512_store_si512((void *)(p), (a))
#define v_set1(x) _mm512_set1_epi64((long long)(x))
#define v_zero() _mm512_setzero_si512()
#define v_add(a, b) _mm512_add_epi64((a), (b))
#define v_sub(a, b) _mm512_sub_epi64((a), (b))
#define v_and(a, b) _mm512_and_si512((a), (b))
#define v_or(a, b) _mm512_or_si512((a), (b))
#define v_xor(a, b) _mm512_xor_si512((a), (b))
#define v_srli(a, n) _mm512_srli_epi64((a), (n))
#define v_slli(a, n) _mm512_slli_epi64((a), (n))
#define v_srai(a, n) _mm512_srai_epi64((a), (n))
#define v_madd52lo(acc, a, b) _mm512_madd52lo_epu64((acc), (a), (b))
#define v_madd52hi(acc, a, b) _mm512_madd52hi_epu64((acc), (a), (b))
#define v_eqmask(a, b) _mm512_maskz_set1_epi64(_mm512_cmpeq_epu64_mask((a), (b)), -1)
/* mask ? a : b: ternary logic 0xca is (A & B) | (~A & C). */
#define v_select(mask, a, b) _mm512_ternarylogic_epi64((mask), (a), (b), 0xca)

#endif

#endif
