/*
 * rsa_mb_kernel.c - eight RSA-CRT private operations at once in the 52-bit
 * lanes of AVX-512 IFMA (or, with KW_MB_EMULATE, its scalar emulation).
 *
 * Written from the published algorithms: Gueron and Krasnov, "Accelerating
 * big integer arithmetic using Intel IFMA extensions" (radix 2^52 numbers,
 * "almost Montgomery" multiplication with vpmadd52luq/huq), and Drucker and
 * Gueron, "Fast modular squaring with AVX512IFMA" (the square computed with
 * each cross product once, doubled, then reduced). Products and squares take
 * one Karatsuba step (Karatsuba and Ofman) over half-size schoolbook ones
 * before the Montgomery reduction.
 *
 * Layout: limb i of the eight lanes is one vector, so each lane has its own
 * key and the lanes never interact. L (limbs per half) and the exponent
 * length are the only things the instruction stream depends on; both are
 * public (the modulus size).
 *
 * Constant time: no branch, loop bound or address depends on a key or on the
 * data. Exponent windows are read with shifts by public amounts; the table
 * entry is chosen by reading all 16 entries and keeping one with masks; the
 * final subtractions are masked. Products are "almost Montgomery" (< 2m, no
 * conditional subtraction), which the 16+ bits of headroom between the
 * prime and R = 2^(52 L) allow (see kw_mb_half).
 */
#include "rsa_mb_kernel.h"

#include <string.h>

#include "rsa_mb_vec.h"

#ifdef KW_MB_EMULATE
#define KW_MB_FN(name) name##_emu
#else
#define KW_MB_FN(name) name##_ifma
#endif

/*
 * Full unrolling keeps a product's columns in registers in the IFMA build.
 * The emulation (a test build) is left rolled: unrolled, eight-lane structs
 * make the compiler take minutes, and the instruction sequence per lane is
 * the same either way.
 */
#ifdef KW_MB_EMULATE
#define MB_UNROLL
#else
#define MB_UNROLL _Pragma("GCC unroll 80")
#endif

#define INLINE static inline __attribute__((always_inline))
#define NOINLINE static __attribute__((noinline))

typedef uint64_t (*vnum_p)[8];
typedef const uint64_t (*cvnum_p)[8];

/* ---- arithmetic on vertical numbers ------------------------------------------------------ */

/* normalize stores acc (limbs below 2^64, value below 2^(52 L)) as 52-bit limbs. */
INLINE void normalize(vnum_p r, vec *acc, unsigned L)
{
	const vec mask = v_set1(MB_MASK52);
	vec c = v_zero();
	MB_UNROLL
	for (unsigned j = 0; j < L; j++) {
		vec t = v_add(acc[j], c);
		v_store(r[j], v_and(t, mask));
		c = v_srli(t, 52);
	}
}

/*
 * sq_cols: c[0..2h) = x^2 as columns (not normalised) for x of h limbs: each
 * cross product x_i x_j (i < j) once, doubled, plus the diagonal
 * (Drucker-Gueron). h^2 + h multiply-adds; columns stay below 2^58.
 */
INLINE void sq_cols(vec *c, const vec *x, unsigned h)
{
	const vec zero = v_zero();

	MB_UNROLL
	for (unsigned j = 0; j < 2 * h; j++)
		c[j] = zero;
	MB_UNROLL
	for (unsigned i = 0; i < h; i++) {
		MB_UNROLL
		for (unsigned j = i + 1; j < h; j++) {
			c[i + j] = v_madd52lo(c[i + j], x[i], x[j]);
			c[i + j + 1] = v_madd52hi(c[i + j + 1], x[i], x[j]);
		}
	}
	MB_UNROLL
	for (unsigned j = 0; j < 2 * h; j++)
		c[j] = v_add(c[j], c[j]);
	MB_UNROLL
	for (unsigned i = 0; i < h; i++) {
		c[2 * i] = v_madd52lo(c[2 * i], x[i], x[i]);
		c[2 * i + 1] = v_madd52hi(c[2 * i + 1], x[i], x[i]);
	}
}

/*
 * absdiff: d = |x - y| for numbers of h normalised limbs: both differences
 * computed with their borrow chains, the non-negative one kept by mask.
 * Returns that mask: all ones in the lanes where x < y.
 */
INLINE vec absdiff(vec *d, const vec *x, const vec *y, unsigned h)
{
	vec u[KW_MB_LMAX / 2], v[KW_MB_LMAX / 2];
	const vec mask = v_set1(MB_MASK52);
	vec bu = v_zero(), bv = v_zero();

	MB_UNROLL
	for (unsigned j = 0; j < h; j++) {
		vec tu = v_add(v_sub(x[j], y[j]), bu), tv = v_add(v_sub(y[j], x[j]), bv);
		u[j] = v_and(tu, mask);
		v[j] = v_and(tv, mask);
		bu = v_srai(tu, 52); /* 0, or all ones on a borrow */
		bv = v_srai(tv, 52);
	}
	/* bu is all ones where x < y: take y - x there. */
	MB_UNROLL
	for (unsigned j = 0; j < h; j++)
		d[j] = v_select(bu, v[j], u[j]);
	return bu;
}

/*
 * reduce_cols: r = t / R mod m, almost, for a 2L-column t (columns signed,
 * below 2^62 in magnitude; total non-negative and below 2^(52 L) m): L
 * Montgomery reduction steps (limb i cleared by q_i m, its carry moved up
 * by an arithmetic shift), then the upper half normalised.
 */
INLINE void reduce_cols(vnum_p r, vec *t, cvnum_p m, const uint64_t *k0p, unsigned L)
{
	const vec zero = v_zero(), k0 = v_load(k0p), mask = v_set1(MB_MASK52);

	MB_UNROLL
	for (unsigned i = 0; i < L; i++) {
		vec q = v_madd52lo(zero, t[i], k0);
		MB_UNROLL
		for (unsigned j = 0; j < L; j++) {
			vec mj = v_load(m[j]);
			t[i + j] = v_madd52lo(t[i + j], q, mj);
			t[i + j + 1] = v_madd52hi(t[i + j + 1], q, mj);
		}
		t[i + 1] = v_add(t[i + 1], v_srai(t[i], 52));
	}
	/* Signed normalisation of the upper half (the total is below 2^(52 L)). */
	vec c = zero;
	MB_UNROLL
	for (unsigned j = 0; j < L; j++) {
		vec tj = v_add(t[L + j], c);
		v_store(r[j], v_and(tj, mask));
		c = v_srai(tj, 52);
	}
}

/* mul_cols: c[0..2h) = x y as columns (not normalised) for x, y of h limbs: 2h^2 multiply-adds. */
INLINE void mul_cols(vec *c, const vec *x, const vec *y, unsigned h)
{
	const vec zero = v_zero();

	MB_UNROLL
	for (unsigned j = 0; j < 2 * h; j++)
		c[j] = zero;
	MB_UNROLL
	for (unsigned i = 0; i < h; i++) {
		MB_UNROLL
		for (unsigned j = 0; j < h; j++) {
			c[i + j] = v_madd52lo(c[i + j], x[i], y[j]);
			c[i + j + 1] = v_madd52hi(c[i + j + 1], x[i], y[j]);
		}
	}
}

/*
 * amm: r = a b / R mod m, "almost": r < a b / R + m, limbs normalised
 * (a, b < 2m keep r < 2m: the 16+ bits of headroom). The product by one Karatsuba
 * step: a b = aL bL + (aL bL + aH bH - (aL - aH)(bL - bH)) B^h + aH bH B^2h,
 * the middle product as |aL - aH| |bL - bH| with its sign applied by mask
 * (x ^ s) - s negates x where s is all ones. 3 (2h^2) multiply-adds for the
 * product instead of 2L^2 (600 against 800 for L = 20), then reduce_cols.
 * r may alias a or b (both are read before r is written).
 */
INLINE void amm(vnum_p r, cvnum_p a, cvnum_p b, cvnum_p m, const uint64_t *k0p, unsigned L)
{
	const unsigned h = L / 2;
	vec t[2 * KW_MB_LMAX], al[KW_MB_LMAX / 2], ah[KW_MB_LMAX / 2], bl[KW_MB_LMAX / 2],
	    bh[KW_MB_LMAX / 2], da[KW_MB_LMAX / 2], db[KW_MB_LMAX / 2];
	vec pl[KW_MB_LMAX], ph[KW_MB_LMAX], pd[KW_MB_LMAX];

	MB_UNROLL
	for (unsigned j = 0; j < h; j++) {
		al[j] = v_load(a[j]);
		ah[j] = v_load(a[h + j]);
		bl[j] = v_load(b[j]);
		bh[j] = v_load(b[h + j]);
	}
	/* (aL - aH)(bL - bH) = sign |da| |db|; keep = all ones where it is non-negative. */
	vec keep =
	    v_xor(v_xor(absdiff(da, al, ah, h), absdiff(db, bl, bh, h)), v_set1(~(uint64_t)0));
	mul_cols(pl, al, bl, h);
	mul_cols(ph, ah, bh, h);
	mul_cols(pd, da, db, h);
	MB_UNROLL
	for (unsigned j = 0; j < L; j++) {
		t[j] = pl[j];
		t[L + j] = ph[j];
	}
	/* Middle: pl + ph - (aL - aH)(bL - bH) = pl + ph + ((pd ^ keep) - keep). */
	MB_UNROLL
	for (unsigned j = 0; j < L; j++)
		t[h + j] =
		    v_add(t[h + j], v_add(v_add(pl[j], ph[j]), v_sub(v_xor(pd[j], keep), keep)));
	reduce_cols(r, t, m, k0p, L);
}

/*
 * ams: r = a^2 / R mod m, almost (the same bound as amm). The 2L-limb
 * square, then L Montgomery reduction steps (limb i cleared by q_i m).
 *
 * The square is one Karatsuba step over squares done as Drucker and Gueron
 * do (sq_cols): with a = aL + aH B^h (h = L/2, B = 2^52) and d = |aL - aH|,
 * a^2 = aL^2 + (aL^2 + aH^2 - d^2) B^h + aH^2 B^2h: three h-limb squares,
 * 3(h^2 + h) multiply-adds instead of L^2 + L (330 against 420 for L = 20;
 * the reduction's 2L^2 is unchanged). The difference is formed with 52-bit
 * limbs because vpmadd52 reads only 52 bits of each factor (aL + aH would
 * not fit). Columns of the middle term may be negative: they are 64-bit
 * two's complement and every carry below is an arithmetic shift, exact for
 * the non-negative total. The extra adds and shifts issue beside the
 * multiply-adds, which bound the time.
 */
INLINE void ams(vnum_p r, cvnum_p a, cvnum_p m, const uint64_t *k0p, unsigned L)
{
	const unsigned h = L / 2;
	vec t[2 * KW_MB_LMAX], x[KW_MB_LMAX / 2], y[KW_MB_LMAX / 2], d[KW_MB_LMAX / 2];
	vec pl[KW_MB_LMAX], ph[KW_MB_LMAX], pd[KW_MB_LMAX];

	MB_UNROLL
	for (unsigned j = 0; j < h; j++) {
		x[j] = v_load(a[j]);
		y[j] = v_load(a[h + j]);
	}
	(void)absdiff(d, x, y, h);
	sq_cols(pl, x, h);
	sq_cols(ph, y, h);
	sq_cols(pd, d, h);
	MB_UNROLL
	for (unsigned j = 0; j < L; j++) {
		t[j] = pl[j];
		t[L + j] = ph[j];
	}
	MB_UNROLL
	for (unsigned j = 0; j < L; j++)
		t[h + j] = v_add(t[h + j], v_sub(v_add(pl[j], ph[j]), pd[j]));
	reduce_cols(r, t, m, k0p, L);
}

/*
 * lookup_part ORs into r, by full scan, the table entries [first, first +
 * count) masked to the lanes whose idx they are (r starts from zero when
 * first is 0): after all parts r holds each lane's entry. Every entry of the
 * range is read for every lane; first and count are public.
 *
 * A part runs after each of the window's squarings (ams_sel), so a lookup is
 * four short bursts instead of one scan between two products. The L partial results stay in
 * registers across a part's entries. AND and OR issue beside vpmadd52 on the Zen 4 cores measured;
 * ternary logic (v_select) competes with it.
 */
INLINE void lookup_part(vnum_p r, const kw_mb_vnum *table, const uint64_t *idxp, unsigned first,
                        unsigned count, unsigned L)
{
	vec acc[KW_MB_LMAX];
	const vec idx = v_load(idxp);

	MB_UNROLL
	for (unsigned j = 0; j < L; j++)
		acc[j] = first == 0 ? v_zero() : v_load(r[j]);
	for (unsigned t = first; t < first + count; t++) {
		vec mask = v_eqmask(idx, v_set1(t));
		MB_UNROLL
		for (unsigned j = 0; j < L; j++)
			acc[j] = v_or(acc[j], v_and(mask, v_load(table[t][j])));
	}
	MB_UNROLL
	for (unsigned j = 0; j < L; j++)
		v_store(r[j], acc[j]);
}

/* cond_sub: r -= m where r >= m (r < 2m), by a mask from the final borrow. */
INLINE void cond_sub(vnum_p r, cvnum_p m, unsigned L)
{
	vec d[KW_MB_LMAX];
	const vec mask = v_set1(MB_MASK52);
	vec b = v_zero();

	for (unsigned j = 0; j < L; j++) {
		vec t = v_add(v_sub(v_load(r[j]), v_load(m[j])), b);
		d[j] = v_and(t, mask);
		b = v_srai(t, 52); /* 0, or all ones on a borrow */
	}
	/* b is all ones where r < m: keep r there. */
	for (unsigned j = 0; j < L; j++)
		v_store(r[j], v_select(b, v_load(r[j]), d[j]));
}

/* Specialised per size, so the loops unroll and the accumulators stay in registers. */
typedef void amm_fn(vnum_p, cvnum_p, cvnum_p, cvnum_p, const uint64_t *);
typedef void ams_fn(vnum_p, cvnum_p, cvnum_p, const uint64_t *);
typedef void lookup_fn(vnum_p, const kw_mb_vnum *, const uint64_t *);
typedef void ams_sel_fn(vnum_p, cvnum_p, cvnum_p, const uint64_t *, vnum_p, const kw_mb_vnum *,
                        const uint64_t *, unsigned, unsigned);
#define MB_SIZE(L)                                                                                 \
	NOINLINE void amm##L(vnum_p r, cvnum_p a, cvnum_p b, cvnum_p m, const uint64_t *k0)        \
	{                                                                                          \
		amm(r, a, b, m, k0, L);                                                            \
	}                                                                                          \
	NOINLINE void ams##L(vnum_p r, cvnum_p a, cvnum_p m, const uint64_t *k0)                   \
	{                                                                                          \
		ams(r, a, m, k0, L);                                                               \
	}                                                                                          \
	/* ams_sel: r = a^2 / R, and one part of a table lookup into sel (see lookup_part). */     \
	NOINLINE void ams_sel##L(vnum_p r, cvnum_p a, cvnum_p m, const uint64_t *k0, vnum_p sel,   \
	                         const kw_mb_vnum *table, const uint64_t *idx, unsigned first,     \
	                         unsigned count)                                                   \
	{                                                                                          \
		ams(r, a, m, k0, L);                                                               \
		lookup_part(sel, table, idx, first, count, L);                                     \
	}                                                                                          \
	NOINLINE void lookup##L(vnum_p r, const kw_mb_vnum *table, const uint64_t *idx)            \
	{                                                                                          \
		lookup_part(r, table, idx, 0, KW_MB_TABLE, L);                                     \
	}
MB_SIZE(20)
MB_SIZE(30)
MB_SIZE(40)

/* ---- exponentiation ---------------------------------------------------------------------- */

/* window reads bits [pos, pos + WIN) of every lane's exponent: public shifts, no branch on data. */
static void window(struct kw_mb_work *w, unsigned pos)
{
	unsigned wd = pos / 64, sh = pos % 64;

	for (int l = 0; l < 8; l++) {
		uint64_t v = w->e[wd][l] >> sh;
		if (sh > 64 - KW_MB_WIN) /* the window straddles two words (public) */
			v |= w->e[wd + 1][l] << (64 - sh);
		w->idx[l] = v & (KW_MB_TABLE - 1);
	}
}

/*
 * modexp: res = x^e mod m (x in Montgomery form in w->x, result in normal
 * form, fully reduced), fixed windows over all hb exponent bits. A window's
 * table entry is gathered into w->t in parts alongside the squarings that
 * precede its multiplication (ams_sel), where the loads are nearly free.
 */
static void modexp(struct kw_mb_work *w, vnum_p res, unsigned L, unsigned hb, amm_fn *mul,
                   ams_fn *sqr, ams_sel_fn *sqr_sel, lookup_fn *sel)
{
	const unsigned nwin = (hb + KW_MB_WIN - 1) / KW_MB_WIN;
	/* Table entries gathered alongside each of a window's squarings. */
	const unsigned part = (KW_MB_TABLE + KW_MB_WIN - 1) / KW_MB_WIN;

	memcpy(w->table[0], w->r1, sizeof(w->table[0]));
	memcpy(w->table[1], w->x, sizeof(w->table[1]));
	/* x^t R: even powers by squaring (cheaper), odd ones by one more product. */
	for (unsigned t = 2; t < KW_MB_TABLE; t++) {
		if (t % 2 == 0)
			sqr(w->table[t], w->table[t / 2], w->m, w->k0);
		else
			mul(w->table[t], w->table[t - 1], w->x, w->m, w->k0);
	}
	window(w, (nwin - 1) * KW_MB_WIN);
	sel(w->acc, (const kw_mb_vnum *)w->table, w->idx);
	for (unsigned wi = nwin - 1; wi-- > 0;) {
		window(w, wi * KW_MB_WIN);
		for (unsigned s = 0; s < KW_MB_WIN; s++) {
			unsigned first = s * part,
			         n = first + part <= KW_MB_TABLE ? part : KW_MB_TABLE - first;
			sqr_sel(w->acc, w->acc, w->m, w->k0, w->t, (const kw_mb_vnum *)w->table,
			        w->idx, first, n);
		}
#ifdef KW_MB_CT_LEAK
		/*
		 * Test-only leak: skip the multiplication by table[0] (R, the
		 * Montgomery one) when every lane's window is zero. The result is
		 * unchanged; the branch depends on the key, which the
		 * constant-time test must report.
		 */
		if ((w->idx[0] | w->idx[1] | w->idx[2] | w->idx[3] | w->idx[4] | w->idx[5] |
		     w->idx[6] | w->idx[7]) == 0)
			continue;
#endif
		mul(w->acc, w->acc, w->t, w->m, w->k0);
	}
	/* Out of Montgomery form (a product by 1), then into [0, m). */
	memset(w->t, 0, sizeof(w->t));
	for (int l = 0; l < 8; l++)
		w->t[0][l] = 1;
	mul(res, w->acc, w->t, w->m, w->k0);
	cond_sub(res, w->m, L);
}

/* load_half transposes one prime's constants of the eight keys into w. */
static void load_half(struct kw_mb_work *w, const struct kw_mb_key *const keys[8], int prime_q,
                      unsigned L)
{
	for (int l = 0; l < 8; l++) {
		const struct kw_mb_half *h = prime_q ? &keys[l]->q : &keys[l]->p;
		for (unsigned i = 0; i < L; i++) {
			w->m[i][l] = h->m[i];
			w->r1[i][l] = h->r1[i];
			w->r2[i][l] = h->r2[i];
			w->r3[i][l] = h->r3[i];
		}
		for (unsigned i = 0; i < KW_MB_LMAX; i++)
			w->e[i][l] = h->e[i];
		w->e[KW_MB_LMAX][l] = 0;
		w->k0[l] = h->k0;
	}
}

/*
 * to_mont: w->x = c R mod m (almost) for c = w->wide (2L limbs): with c =
 * cH R + cL, c R = cH R^2 + cL R = amm(cH, R^3) + amm(cL, R^2).
 */
static void to_mont(struct kw_mb_work *w, unsigned L, amm_fn *mul)
{
	vec acc[KW_MB_LMAX];

	mul(w->x, (cvnum_p)w->wide, w->r2, w->m, w->k0);
	mul(w->t, (cvnum_p)(w->wide + L), w->r3, w->m, w->k0);
	for (unsigned j = 0; j < L; j++)
		acc[j] = v_add(v_load(w->x[j]), v_load(w->t[j]));
	normalize(w->x, acc, L);
}

/*
 * garner: c^d = m2 + q * ((m1 - m2) qinv mod p). m1 < p, m2 < q < 2p, so
 * m1 + 2p - m2 is positive and below 3p. w holds p (m, k0); result in w->wide.
 */
static void garner(struct kw_mb_work *w, unsigned L, amm_fn *mul)
{
	vec acc[KW_MB_LMAX];
	const vec mask = v_set1(MB_MASK52);
	vec c = v_zero();

	for (unsigned j = 0; j < L; j++) {
		vec p = v_load(w->m[j]);
		vec t = v_add(v_sub(v_add(v_load(w->m1[j]), v_add(p, p)), v_load(w->m2[j])), c);
		acc[j] = v_and(t, mask);
		c = v_srai(t, 52);
	}
	normalize(w->t, acc, L);
	mul(w->t, w->t, w->qinv, w->m, w->k0); /* h = t qinv R / R */
	cond_sub(w->t, w->m, L);               /* h < p */
	/* wide = m2 + h q: a plain product, columns summed in memory, then normalised. */
	for (unsigned j = 0; j < 2 * L; j++)
		v_store(w->wide[j], j < L ? v_load(w->m2[j]) : v_zero());
	for (unsigned i = 0; i < L; i++) {
		vec hi = v_load(w->t[i]);
		for (unsigned j = 0; j < L; j++) {
			vec qj = v_load(w->qv[j]);
			v_store(w->wide[i + j], v_madd52lo(v_load(w->wide[i + j]), hi, qj));
			v_store(w->wide[i + j + 1], v_madd52hi(v_load(w->wide[i + j + 1]), hi, qj));
		}
	}
	c = v_zero();
	for (unsigned j = 0; j < 2 * L; j++) {
		vec t = v_add(v_load(w->wide[j]), c);
		v_store(w->wide[j], v_and(t, mask));
		c = v_srli(t, 52);
	}
}

/* ---- conversions ------------------------------------------------------------------------- */

/* be_to_limbs reads a big-endian number of nb bytes into lane l of nl limbs. */
static void be_to_limbs(uint64_t (*out)[8], int l, const uint8_t *be, size_t nb, unsigned nl)
{
	unsigned __int128 acc = 0;
	unsigned bits = 0, li = 0;

	for (size_t k = 0; k < nb; k++) {
		acc |= (unsigned __int128)be[nb - 1 - k] << bits;
		bits += 8;
		if (bits >= 52) { /* public: depends on k only */
			out[li++][l] = (uint64_t)acc & MB_MASK52;
			acc >>= 52;
			bits -= 52;
		}
	}
	while (li < nl) {
		out[li++][l] = (uint64_t)acc & MB_MASK52;
		acc >>= 52;
	}
}

/* limbs_to_be writes lane l of nl normalised limbs as nb big-endian bytes. */
static void limbs_to_be(uint8_t *be, size_t nb, const uint64_t (*in)[8], int l, unsigned nl)
{
	for (size_t k = 0; k < nb; k++) {
		unsigned bit = (unsigned)(8 * k), i = bit / 52, sh = bit % 52;
		uint64_t v = in[i][l] >> sh;
		if (sh > 44 && i + 1 < nl) /* public */
			v |= in[i + 1][l] << (52 - sh);
		be[nb - 1 - k] = (uint8_t)v;
	}
}

/*
 * verify65537 sets w->verified[l] where s^65537 mod n equals the input in
 * buf[l], for RSA-2048 (n in 40 limbs; s in w->wide). Public values only:
 * the check guards against faults, not against observers.
 */
static void verify65537(struct kw_mb_work *w, const struct kw_mb_key *const keys[8],
                        uint8_t *const buf[8], size_t nb)
{
	enum { LN = 40 };

	for (int l = 0; l < 8; l++) {
		for (unsigned i = 0; i < LN; i++) {
			w->m[i][l] = keys[l]->pub.n[i];
			w->r2[i][l] = keys[l]->pub.r2[i];
		}
		w->k0[l] = keys[l]->pub.k0;
	}
	amm40(w->x, (cvnum_p)w->wide, w->r2, w->m, w->k0); /* s R */
	memcpy(w->acc, w->x, sizeof(w->acc));
	for (int s = 0; s < 16; s++)
		ams40(w->acc, w->acc, w->m, w->k0);
	amm40(w->acc, w->acc, w->x, w->m, w->k0); /* s^65537 R */
	memset(w->t, 0, sizeof(w->t));
	for (int l = 0; l < 8; l++)
		w->t[0][l] = 1;
	amm40(w->acc, w->acc, w->t, w->m, w->k0);
	cond_sub(w->acc, w->m, LN);
	for (int l = 0; l < 8; l++) {
		uint64_t diff = 0;
		be_to_limbs(w->t, l, buf[l], nb, LN);
		for (unsigned i = 0; i < LN; i++)
			diff |= w->acc[i][l] ^ w->t[i][l];
		w->verified[l] = ((diff | (0 - diff)) >> 63) ^ 1;
	}
}

/* ---- the entry point --------------------------------------------------------------------- */

void KW_MB_FN(kw_mb_rsa_private)(const struct kw_mb_key *const keys[8], uint8_t *const buf[8],
                                 struct kw_mb_work *w)
{
	const unsigned L = keys[0]->limbs, hb = keys[0]->bits / 2;
	const size_t nb = keys[0]->bits / 8;
	amm_fn *mul = L == 20 ? amm20 : L == 30 ? amm30 : amm40;
	ams_fn *sqr = L == 20 ? ams20 : L == 30 ? ams30 : ams40;
	ams_sel_fn *sqr_sel = L == 20 ? ams_sel20 : L == 30 ? ams_sel30 : ams_sel40;
	lookup_fn *sel = L == 20 ? lookup20 : L == 30 ? lookup30 : lookup40;

	/* q first: its prime stays in w->qv for Garner; p's constants stay loaded. */
	for (int half = 1; half >= 0; half--) {
		for (int l = 0; l < 8; l++)
			be_to_limbs(w->wide, l, buf[l], nb, 2 * L);
		load_half(w, keys, half, L);
		to_mont(w, L, mul);
		modexp(w, half ? w->m2 : w->m1, L, hb, mul, sqr, sqr_sel, sel);
		if (half)
			memcpy(w->qv, w->m, sizeof(w->qv));
	}
	for (int l = 0; l < 8; l++)
		for (unsigned i = 0; i < L; i++)
			w->qinv[i][l] = keys[l]->qinv_r[i];
	garner(w, L, mul);
	int check = L == 20;
	for (int l = 0; l < 8; l++) {
		check &= keys[l]->pub.check != 0;
		w->verified[l] = 0;
	}
	if (check)
		verify65537(w, keys, buf, nb);
	for (int l = 0; l < 8; l++)
		limbs_to_be(buf[l], nb, (cvnum_p)w->wide, l, 2 * L);
}
