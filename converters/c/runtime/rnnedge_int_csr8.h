
/* One non-zero of a CSR matrix with int8 values and at most 256 columns (re_mv_csr_i8_c8_*:
 * col is the column; re_mv_csr_i8_c8o_*, at most 128 columns: col is 2 column). */
typedef struct { uint8_t col; int8_t val; } re_csr8_t;
/* x[c / 2] for a byte offset c = 2 column: the int16 element at byte c of x (aligned). */
#define RE_XB(x, c) (*(const int16_t *)(const void *)((const uint8_t *)(x) + (c)))
