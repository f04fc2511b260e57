
/* ---- integer runtime (see keras_rnnedge.converters.c.intmodel for the exact semantics) ---- */
/* ARM DSP extension (Cortex-M4/M7/M33...): QADD, SSAT, and packed dense kernels with SMLAD. */
#ifndef RE_DSP
#if defined(__GNUC__) && defined(__ARM_FEATURE_DSP) && defined(__ARM_FEATURE_SIMD32) \
    && defined(__ARM_FEATURE_SAT)
#define RE_DSP 1
#else
#define RE_DSP 0
#endif
#endif
#if RE_DSP
#include <arm_acle.h>
/* acc += w0 x0 + w1 x1 + w2 x2 + w3 x3 (modulo 2^32) for the int8 weights of the word w (w0 in
 * the low byte) and the int16 inputs of the words x01 = (x0, x1) and x23 = (x2, x3): SXTB16 gives
 * (w0, w2), SXTB16 of w rotated by 8 gives (w1, w3); SMLABB/SMLATB/SMLABT/SMLATT multiply the
 * matching halfwords. Inline assembler: older compilers lack the ACLE halfword intrinsics. */
#define RE_DSP_MAC4_I8(ACC_, W_, X01_, X23_) do { \
    uint32_t re_p02_, re_p13_; \
    __asm__ ("sxtb16 %0, %1" : "=r"(re_p02_) : "r"(W_)); \
    __asm__ ("sxtb16 %0, %1, ror #8" : "=r"(re_p13_) : "r"(W_)); \
    __asm__ ("smlabb %0, %1, %2, %0" : "+r"(ACC_) : "r"(re_p02_), "r"(X01_)); \
    __asm__ ("smlatb %0, %1, %2, %0" : "+r"(ACC_) : "r"(re_p02_), "r"(X23_)); \
    __asm__ ("smlabt %0, %1, %2, %0" : "+r"(ACC_) : "r"(re_p13_), "r"(X01_)); \
    __asm__ ("smlatt %0, %1, %2, %0" : "+r"(ACC_) : "r"(re_p13_), "r"(X23_)); \
} while (0)
#endif
/* RE_UNUSED marks the helpers of this runtime that the model does not call (the runtime is the
 * same in every generated file); RE_FALLTHROUGH ends a switch case that falls through (clang
 * needs the attribute; gcc >= 7 takes it too, older compilers get an empty statement). */
#if defined(__GNUC__)
#define RE_UNUSED __attribute__((unused))
#else
#define RE_UNUSED
#endif
#if defined(__has_attribute)
#if __has_attribute(fallthrough)
#define RE_FALLTHROUGH __attribute__((fallthrough))
#endif
#endif
#ifndef RE_FALLTHROUGH
#define RE_FALLTHROUGH do { } while (0)
#endif
/* sat32(a + b). QADD is exactly this. On the AVR: the sum modulo 2^32 (unsigned, defined), then
 * overflow iff a and b have the same sign and the wrapped sum the other one ((a ^ s) & (b ^ s)
 * negative); the conversion of the wrapped sum back to int32 is modulo 2^32 in gcc. */
static inline int32_t re_sat_add32(int32_t a, int32_t b) {
#if RE_DSP
    return __qadd(a, b);
#elif defined(__AVR__)
    const int32_t s = (int32_t)((uint32_t)a + (uint32_t)b);
    if (((a ^ s) & (b ^ s)) < 0) return a < 0 ? INT32_MIN : INT32_MAX;
    return s;
#else
    if (b > 0 && a > INT32_MAX - b) return INT32_MAX;
    if (b < 0 && a < INT32_MIN - b) return INT32_MIN;
    return a + b;
#endif
}
static inline int16_t re_sat16(int32_t v) {
#if RE_DSP
    return (int16_t)__ssat(v, 16);
#else
    return v > INT16_MAX ? (int16_t)INT16_MAX : v < INT16_MIN ? (int16_t)INT16_MIN : (int16_t)v;
#endif
}
static inline int32_t re_clip32(int32_t v, int32_t lo, int32_t hi) {
    return v < lo ? lo : v > hi ? hi : v;
}
/* round half up: floor(v / 2^s + 1/2), 1 <= s <= 31, without the overflow of v + 2^(s-1) */
static inline int32_t re_rshift(int32_t v, uint8_t s) {
    return (v >> s) + ((v >> (s - 1)) & 1);
}
/* saturating v * 2^k, 1 <= k <= 30 */
static inline int32_t re_lshift_sat(int32_t v, uint8_t k) {
    const int32_t hi = INT32_MAX >> k;
    const int32_t lo = -(int32_t)(((uint32_t)1) << (31 - k));
    if (v > hi) return INT32_MAX;
    if (v < lo) return INT32_MIN;
    return v * (int32_t)(((uint32_t)1) << k);
}
static inline int32_t re_qtanh(int32_t v, int32_t one) { return re_clip32(v, -one, one); }
static inline int32_t re_qsigmoid(int32_t v, int32_t one) {
    return re_rshift(re_clip32(v, -one, one) + one, 1);
}
/* Inlined where called: f and g are constants there, and every shift below becomes a constant
 * shift (a variable 32-bit shift is a loop on the AVR). */
#if defined(__GNUC__)
#define RE_ACT_INLINE static inline __attribute__((always_inline))
#else
#define RE_ACT_INLINE static inline
#endif
#if defined(__AVR__) && defined(RE_PGM)
/* The interpolation of re_tanh_q16 below on the AVR, table in flash, from a (< 6 * 2^16)
 * given as hi = a >> 8 (< 0x600) and lo = a & 255: i = a >> 11 = hi >> 3 (< 192; the byte
 * offset 2 i = (hi >> 2) & ~1), r = a & 2047 = rh 2^8 + lo with rh = hi & 7. The four LPM
 * read T[i] and T[i + 1]; d = T[i + 1] - T[i] is in [0, 2^11] (the table is non-decreasing,
 * steps <= 2^11), so dH = d >> 8 <= 8 and dH rh <= 56 (one byte). p = d r < 2^22:
 * p = dL lo + (dL rh + dH lo) 2^8 + dH rh 2^16, every partial product non-negative, so the
 * partial sums stay below 2^22 and bytes 1..2 of p (q below) are formed exactly; byte 0
 * (the low byte of dL lo) takes no addition, so no carry leaves it and it is dropped.
 * rshift(p, 11) = (p + 2^10) >> 11 = ((p >> 8) + 4) >> 3 (the bits dropped by >> 8 cannot
 * carry into bit 10 when 2^10 = 4 2^8 is added): q + 4 < 2^14 in 16 bits, then three shifts.
 * Out of line: inlined in a large loop, its register needs cost more than the call. */
static __attribute__((noinline)) uint16_t re_tanh_interp(uint16_t hi, uint8_t lo,
                                                         const uint16_t *tab) {
    uint16_t y, d, q;
    uint8_t rh;
    __asm__ ("movw r30, %[hi]\n\t" "lsr r31\n\t" "ror r30\n\t" "lsr r31\n\t" "ror r30\n\t"
             "andi r30, 0xfe\n\t" "add r30, %A[tab]\n\t" "adc r31, %B[tab]\n\t"
             "lpm %A[y], Z+\n\t" "lpm %B[y], Z+\n\t" "lpm %A[d], Z+\n\t" "lpm %B[d], Z\n\t"
             "sub %A[d], %A[y]\n\t" "sbc %B[d], %B[y]\n\t"
             "mov %[rh], %A[hi]\n\t" "andi %[rh], 7\n\t"
             "mul %A[d], %[lo]\n\t" "mov %A[q], r1\n\t"
             "mul %B[d], %[rh]\n\t" "mov %B[q], r0\n\t"
             "mul %A[d], %[rh]\n\t" "add %A[q], r0\n\t" "adc %B[q], r1\n\t"
             "mul %B[d], %[lo]\n\t" "add %A[q], r0\n\t" "adc %B[q], r1\n\t"
             "clr r1\n\t"
             "subi %A[q], -4\n\t" "sbci %B[q], -1\n\t"
             "lsr %B[q]\n\t" "ror %A[q]\n\t" "lsr %B[q]\n\t" "ror %A[q]\n\t"
             "lsr %B[q]\n\t" "ror %A[q]\n\t"
             "add %A[y], %A[q]\n\t" "adc %B[y], %B[q]"
             : [y] "=&r"(y), [d] "=&r"(d), [q] "=&d"(q), [rh] "=&d"(rh)
             : [hi] "r"(hi), [lo] "r"(lo), [tab] "r"(tab)
             : "r0", "r30", "r31");
    return y;
}
#endif
/* |tanh(v / 2^g)| in Q16 (0..65536), 0 <= g <= 16 (intmodel.tanh_q16): a table of tanh in
 * Q16 every 1/32 on [0, 6], linear interpolation; 65536 from 6 on. With a = |v| in Q16
 * (< 6 * 2^16): i = a >> 11 (< 192), r = a & 2047, d = T[i + 1] - T[i] (<= 2^11), and
 * rshift(d r, 11) = (t + 1) >> 1 with t = (d r) >> 10 (< 2^12): byte moves and 16-bit
 * shifts instead of 32-bit shift loops on the AVR. */
static const uint16_t re_tanh_tab[RE_TANH_KNOTS]RE_TANH_ATTR = {
RE_TANH_TABLE
};
RE_ACT_INLINE int32_t re_tanh_q16(int32_t v, uint8_t g) {
    const int32_t lim = INT32_C(6) << g;
    uint32_t a;
    uint16_t i, r, t0, d, t;
    if (v >= lim || v <= -lim) return INT32_C(65536);
    a = (uint32_t)(v < 0 ? -v : v) << (16 - g);
#if defined(__AVR__) && defined(RE_PGM)
    return (int32_t)re_tanh_interp((uint16_t)(a >> 8), (uint8_t)a, re_tanh_tab);
#endif
    i = (uint16_t)((uint16_t)(a >> 8) >> 3);
    r = (uint16_t)((uint16_t)a & 2047u);
    t0 = RE_RD_U16(&re_tanh_tab[i]);
    d = (uint16_t)(RE_RD_U16(&re_tanh_tab[i + 1]) - t0);
    t = (uint16_t)((uint16_t)(((uint32_t)d * r) >> 8) >> 2);
    return (int32_t)t0 + (int32_t)((t + 1u) >> 1);
}
#if defined(__AVR__) && defined(RE_PGM)
/* AVR: tanh_q16(v, g) for |v| = u < 6 2^g (the caller tests the saturated case), as a uint16
 * (< 65536 there: T[i] + rshift(d r, 11) <= T[i + 1] <= 65535); a = u 2^(16 - g) < 6 2^16. */
RE_ACT_INLINE uint16_t re_tanh_q16_in(uint32_t u, uint8_t g) {
    const uint32_t a = u << (16 - g);
    return re_tanh_interp((uint16_t)(a >> 8), (uint8_t)a, re_tanh_tab);
}
/* rshift(q, s) for a uint16 q and 1 <= s <= 16, in 16 bits (the sum <= 2^(16-s) + 1). */
RE_ACT_INLINE uint16_t re_rsh_u16(uint16_t q, uint8_t s) {
    return (uint16_t)((q >> s) + ((q >> (s - 1)) & 1u));
}
#endif
/* tanh in Qf (f <= 15): exactly odd. AVR: with u = |v| (as uint32: also for INT32_MIN),
 * u >= 6 2^f is the saturated case, y = rshift(65536, 16 - f) = 2^f; else y =
 * rshift(q, 16 - f) with q = tanh_q16 < 65536, a uint16, so the rounding is done in 16 bits. */
#if defined(__AVR__) && defined(RE_PGM)
RE_ACT_INLINE int32_t re_tanh_avr(int32_t v, uint8_t f) {
    const uint32_t u = v < 0 ? UINT32_C(0) - (uint32_t)v : (uint32_t)v;
    const uint16_t y = u >= (UINT32_C(6) << f) ? (uint16_t)(1u << f)
                       : re_rsh_u16(re_tanh_q16_in(u, f), (uint8_t)(16 - f));
    return v < 0 ? -(int32_t)y : (int32_t)y;
}
#endif
RE_ACT_INLINE int32_t re_tanh(int32_t v, uint8_t f) {
#if defined(__AVR__) && defined(RE_PGM)
    return re_tanh_avr(v, f);
#endif
    const int32_t y = re_rshift(re_tanh_q16(v, f), (uint8_t)(16 - f));
    return v < 0 ? -y : y;
}
/* sigmoid(x) = (1 + tanh(x / 2)) / 2 in Qf (f <= 15): sigmoid(-x) = 1 - sigmoid(x) exactly */
#if defined(__AVR__) && defined(RE_PGM)
/* AVR, 1 <= f: with s = 17 - f (2..16), 65536 is a multiple of 2^s, so
 * rshift(65536 + q, s) = 2^(16-s) + rshift(q, s) = 2^(f-1) + rshift(q, s) (16 bits, the
 * sum <= 2^f); saturated (u >= 6 2^(f+1)): rshift(2^17, s) = 2^f. */
RE_ACT_INLINE int32_t re_sigmoid_avr(int32_t v, uint8_t f) {
    const uint32_t u = v < 0 ? UINT32_C(0) - (uint32_t)v : (uint32_t)v;
    const uint16_t p = u >= (UINT32_C(6) << (f + 1)) ? (uint16_t)(1u << f)
        : (uint16_t)((1u << (f - 1))
                     + re_rsh_u16(re_tanh_q16_in(u, (uint8_t)(f + 1)), (uint8_t)(17 - f)));
    return v < 0 ? (int32_t)(uint16_t)((1u << f) - p) : (int32_t)p;
}
#endif
RE_ACT_INLINE int32_t re_sigmoid(int32_t v, uint8_t f) {
#if defined(__AVR__) && defined(RE_PGM)
    if (f >= 1) return re_sigmoid_avr(v, f);
#endif
    const int32_t p = re_rshift(INT32_C(65536) + re_tanh_q16(v, (uint8_t)(f + 1)),
                                (uint8_t)(17 - f));
    return v < 0 ? (INT32_C(1) << f) - p : p;
}
static inline int32_t re_hsigmoid(int32_t v, int32_t one) {
    const int32_t lim = (5 * one) >> 1;
    return re_clip32(re_rshift(re_clip32(v, -lim, lim) * HS_SLOPE, 16) + one / 2, 0, one);
}
static inline int32_t re_relu(int32_t v) { return v > 0 ? v : 0; }
/* sat32(rshift(a * b, s)) with a 64-bit product (GRU reset_after: r * (h U + b)) */
static inline int32_t re_mul_rshift64(int32_t a, int32_t b, uint8_t s) {
    const int64_t v = (int64_t)a * (int64_t)b;
    const int64_t r = (v >> s) + ((v >> (s - 1)) & 1);
    return r > INT32_MAX ? INT32_MAX : r < INT32_MIN ? INT32_MIN : (int32_t)r;
}

/* acc += w * x for an int8 w and an int16 x, without saturation (callers guarantee the sum
 * fits int32; see cgen._row_fits). On the AVR: two hardware multiplies and byte adds
 * (MULSU/MULS set C to the sign of the 16-bit product, so SBC t,t is its sign extension),
 * instead of a call to the 16x16->32 multiply; the result is the same integer. */
#if defined(__AVR__)
#define RE_MAC_I8(ACC_, W_, X_) do { \
    const int8_t re_w_ = (int8_t)(W_); \
    const int16_t re_x_ = (int16_t)(X_); \
    uint8_t re_t_; \
    __asm__ ("mulsu %[rw], %A[rx]\n\t" "sbc %[rt], %[rt]\n\t" \
             "add %A[ra], r0\n\t" "adc %B[ra], r1\n\t" "adc %C[ra], %[rt]\n\t" \
             "adc %D[ra], %[rt]\n\t" "muls %[rw], %B[rx]\n\t" "sbc %[rt], %[rt]\n\t" \
             "add %B[ra], r0\n\t" "adc %C[ra], r1\n\t" "adc %D[ra], %[rt]\n\t" "clr r1" \
             : [ra] "+r"(ACC_), [rt] "=&r"(re_t_) : [rw] "a"(re_w_), [rx] "a"(re_x_) : "r0"); \
} while (0)
#else
#define RE_MAC_I8(ACC_, W_, X_) ((ACC_) += (int32_t)(W_) * (int32_t)(X_))
#endif
/* Unroll the non-saturating loops by 4 (default: not on the AVR, where avr-gcc -Os code
 * gets slower). */
#ifndef RE_UNROLL
#if defined(__AVR__)
#define RE_UNROLL 0
#else
#define RE_UNROLL 1
#endif
#endif
#define RE_MAC_I16(ACC_, W_, X_) ((ACC_) += (int32_t)(W_) * (int32_t)(X_))
#if defined(__GNUC__)
#define RE_INLINE static inline __attribute__((always_inline))
#else
#define RE_INLINE static inline
#endif
/* row kernels: on the AVR they are never inlined (their assembler loops need registers r16-r23
 * that a large caller may not have) */
#if defined(__AVR__)
#define RE_KERNEL static __attribute__((noinline))
#else
#define RE_KERNEL static
#endif

/* rshift(v, s) for a constant s (1 <= s <= 31), what re_rshift computes, in fewer operations.
 * With t = v >> (s - 1): v >> s = t >> 1 (floor(floor(v / 2^(s-1)) / 2) = floor(v / 2^s)) and
 * (v >> (s - 1)) & 1 = t & 1, so rshift(v, s) = (t >> 1) + (t & 1): one variable shift.
 * On the AVR (no barrel shifter: avr-gcc -Os shifts an int32 by 15 in a 15-pass loop), for
 * 9 <= s <= 16 write v = hi 2^16 + lo with hi = v >> 16 (int16) and lo = (uint16_t)v in
 * [0, 2^16): then floor(v / 2^s) = hi 2^(16-s) + floor(lo / 2^s) (hi 2^(16-s) is an integer),
 * and with m = lo >> (s - 1): floor(lo / 2^s) + (bit s-1 of lo) = (m >> 1) + (m & 1)
 * = (m + 1) >> 1 (m < 2^16, so m + 1 fits the uint16 arithmetic below); hence
 * rshift(v, s) = hi 2^(16-s) + ((m + 1) >> 1), where |hi 2^(16-s)| <= 2^22.
 * For s >= 17, v >> (s - 1) = hi >> (s - 17) (shifts compose), an int16. */
RE_INLINE int32_t re_rsh(int32_t v, uint8_t s) {
#if defined(__AVR__)
    if (s >= 9 && s <= 16) {
        const int16_t hi = (int16_t)(v >> 16);
        const uint16_t m = (uint16_t)((uint16_t)v >> (s - 1));
        return (int32_t)hi * (INT32_C(1) << (16 - s)) + (int32_t)(uint16_t)((m + 1u) >> 1);
    }
    if (s >= 17) {
        const int16_t t = (int16_t)((int16_t)(v >> 16) >> (s - 17));
        return (int32_t)(int16_t)((t >> 1) + (t & 1));
    }
#endif
    {
        const int32_t t = v >> (s - 1);
        return (t >> 1) + (t & 1);
    }
}

#if defined(__AVR__)
/* (int32_t)a * b for int16 a, b with the hardware multiplier (libgcc's __mulhisi3, inline):
 * a b = aH bH 2^16 + (aH bL + bH aL) 2^8 + aL bL (aH, bH signed high bytes, aL, bL unsigned low
 * bytes). MULSU leaves C = the sign of its 16-bit product, so SBC p3, zero adds its sign
 * extension (0xff.. from byte 3 on) before the product is added at byte 1. */
static __attribute__((noinline)) int32_t re_mul_hw(int16_t a, int16_t b) {
    int32_t p;
    uint8_t z;
    __asm__ ("clr %[z]\n\t" "muls %B[a], %B[b]\n\t" "movw %C[p], r0\n\t"
             "mul %A[a], %A[b]\n\t" "movw %A[p], r0\n\t"
             "mulsu %B[a], %A[b]\n\t" "sbc %D[p], %[z]\n\t" "add %B[p], r0\n\t"
             "adc %C[p], r1\n\t" "adc %D[p], %[z]\n\t"
             "mulsu %B[b], %A[a]\n\t" "sbc %D[p], %[z]\n\t" "add %B[p], r0\n\t"
             "adc %C[p], r1\n\t" "adc %D[p], %[z]\n\t" "clr r1"
             : [p] "=&r"(p), [z] "=&r"(z) : [a] "a"(a), [b] "a"(b) : "r0");
    return p;
}
#endif
/* a * b for an int16 b, when the caller knows the product fits int32 (as the plain product).
 * AVR: a 16x16->32 multiply when a fits int16 ((uint32_t)a + 2^15 wraps into [0, 2^16) exactly
 * for a in [-2^15, 2^15)), and for a = 2^15 (activations reach ONE = 2^15):
 * 2^15 b = 32767 b + b, |32767 b| < 2^30; otherwise the 32-bit multiply. */
RE_INLINE int32_t re_mul16(int32_t a, int16_t b) {
#if defined(__AVR__)
    if ((uint32_t)a + UINT32_C(32768) <= UINT32_C(65535)) return re_mul_hw((int16_t)a, b);
    if (a == INT32_C(32768)) return re_mul_hw(32767, b) + b;
#endif
    return a * (int32_t)b;
}
/* a * b when the caller knows the product fits int32; re_mul16 when one factor fits int16. */
static inline int32_t re_mul(int32_t a, int32_t b) {
#if defined(__AVR__)
    if ((uint32_t)b + UINT32_C(32768) <= UINT32_C(65535)) return re_mul16(a, (int16_t)b);
    if ((uint32_t)a + UINT32_C(32768) <= UINT32_C(65535)) return re_mul16(b, (int16_t)a);
#endif
    return a * b;
}
#if defined(__AVR__)
/* rshift(a * b, 15) for int16 a, b, inline. MUL (unsigned, any registers, so that inlining
 * never runs out of the r16-r23 that MULS/MULSU need) forms the unsigned product U of
 * ua = a mod 2^16 and ub = b mod 2^16; with a = ua - 2^16 [a < 0], b = ub - 2^16 [b < 0]:
 * a b = U - 2^16 ub [a < 0] - 2^16 ua [b < 0] (mod 2^32), and since |a b| <= 2^30 the result
 * modulo 2^32 is the signed product p. Then p >> 15 (bits 15..31 of p: LSL/ROL move bits
 * 15..30 into bytes C, D and the sign bit 31 into C, which SBC spreads over a byte e) plus the
 * rounding bit 14 (the next LSL's carry), added to (e, e, D, C) moved down two bytes. */
RE_INLINE int32_t re_mul_hw_rsh15(int16_t a, int16_t b) {
    int32_t p;
    uint8_t z, e;
    __asm__ ("clr %[z]\n\t"
             "mul %A[a], %A[b]\n\t" "movw %A[p], r0\n\t"
             "mul %B[a], %B[b]\n\t" "movw %C[p], r0\n\t"
             "mul %B[a], %A[b]\n\t" "add %B[p], r0\n\t" "adc %C[p], r1\n\t"
             "adc %D[p], %[z]\n\t"
             "mul %A[a], %B[b]\n\t" "add %B[p], r0\n\t" "adc %C[p], r1\n\t"
             "adc %D[p], %[z]\n\t" "clr r1\n\t"
             "sbrs %B[a], 7\n\t" "rjmp 1f\n\t" "sub %C[p], %A[b]\n\t" "sbc %D[p], %B[b]\n"
             "1:\n\t"
             "sbrs %B[b], 7\n\t" "rjmp 2f\n\t" "sub %C[p], %A[a]\n\t" "sbc %D[p], %B[a]\n"
             "2:\n\t"
             "lsl %B[p]\n\t" "rol %C[p]\n\t" "rol %D[p]\n\t" "sbc %[e], %[e]\n\t"
             "lsl %B[p]\n\t" "mov %A[p], %C[p]\n\t" "mov %B[p], %D[p]\n\t"
             "mov %C[p], %[e]\n\t" "mov %D[p], %[e]\n\t"
             "adc %A[p], %[z]\n\t" "adc %B[p], %[z]\n\t" "adc %C[p], %[z]\n\t"
             "adc %D[p], %[z]"
             : [p] "=&r"(p), [z] "=&r"(z), [e] "=&r"(e) : [a] "r"(a), [b] "r"(b) : "r0");
    return p;
}
/* rshift(a b, 15) for 0 <= a <= 2^15 and an int16 b, inline, as an int16 (|a b| <= 2^30, so
 * the result is in [-2^15, 2^15 - 1]). MUL forms the unsigned product of a and ub = b mod 2^16
 * (partial sums of non-negative terms, below 2^32: no carry is lost); for b < 0,
 * a b = a ub - 2^16 a, subtracted from bytes 2..3; modulo 2^32 that is the signed product p.
 * Byte 0 of p (the low byte of aL bL) takes no addition, so it is not formed. p >> 15 is bits
 * 15..30 of p (LSL/ROL of bytes 1..3; the result fits int16, so bit 31 is its sign bit), and
 * the next LSL's carry is bit 14, the rounding bit, added in 16 bits without overflow. */
RE_INLINE int16_t re_mul_u15_hw(uint16_t a, int16_t b) {
    int16_t r;
    uint8_t z, p1;
    __asm__ ("clr %[z]\n\t"
             "mul %A[a], %A[b]\n\t" "mov %[p1], r1\n\t"
             "mul %B[a], %B[b]\n\t" "movw %A[r], r0\n\t"
             "mul %B[a], %A[b]\n\t" "add %[p1], r0\n\t" "adc %A[r], r1\n\t"
             "adc %B[r], %[z]\n\t"
             "mul %A[a], %B[b]\n\t" "add %[p1], r0\n\t" "adc %A[r], r1\n\t"
             "adc %B[r], %[z]\n\t" "clr r1\n\t"
             "sbrs %B[b], 7\n\t" "rjmp 1f\n\t" "sub %A[r], %A[a]\n\t" "sbc %B[r], %B[a]\n"
             "1:\n\t"
             "lsl %[p1]\n\t" "rol %A[r]\n\t" "rol %B[r]\n\t"
             "lsl %[p1]\n\t" "adc %A[r], %[z]\n\t" "adc %B[r], %[z]"
             : [r] "=&r"(r), [z] "=&r"(z), [p1] "=&r"(p1) : [a] "r"(a), [b] "r"(b) : "r0");
    return r;
}
/* rshift(a * b, s) for an int16 b, the other cases (s != 15, a outside int16), out of line. */
static __attribute__((noinline)) int32_t re_mulsh16_other(int32_t a, int16_t b, uint8_t s) {
    return re_rsh(re_mul16(a, b), s);
}
#endif
/* rshift(a * b, s) for an int16 b, when the caller knows the product fits int32. */
RE_INLINE int32_t re_mulsh16(int32_t a, int16_t b, uint8_t s) {
#if defined(__AVR__)
    if (s == 15 && (uint32_t)a + UINT32_C(32768) <= UINT32_C(65535))
        return re_mul_hw_rsh15((int16_t)a, b);
    return re_mulsh16_other(a, b, s);
#else
    return re_rsh(re_mul16(a, b), s);
#endif
}
/* rshift(a b, 15) for 0 <= a <= 2^15 and -2^15 <= b <= 2^15 (|a b| <= 2^30): FastGRNN's
 * update, a product of a gate in [0, 1] or a constant in [0, 1] with an activation in [-1, 1]
 * or the state, in Q15. AVR: b = 2^15 (not an int16) gives rshift(a 2^15, 15) = a exactly. */
RE_INLINE int32_t re_mulq15(uint16_t a, int32_t b) {
#if defined(__AVR__)
    if (b == INT32_C(32768)) return (int32_t)a;
    return re_mul_u15_hw(a, (int16_t)b);
#else
    return re_rsh((int32_t)a * b, 15);
#endif
}
/* rshift(a * b, s) when the caller knows the product fits int32. */
RE_INLINE int32_t re_mulsh(int32_t a, int32_t b, uint8_t s) {
#if defined(__AVR__)
    if ((uint32_t)b + UINT32_C(32768) <= UINT32_C(65535)) return re_mulsh16(a, (int16_t)b, s);
    if ((uint32_t)a + UINT32_C(32768) <= UINT32_C(65535)) return re_mulsh16(b, (int16_t)a, s);
#endif
    return re_rsh(a * b, s);
}
