
/* RF_UNUSED marks the helpers that this model does not call. */
#if defined(__GNUC__)
#define RF_UNUSED __attribute__((unused))
#else
#define RF_UNUSED
#endif
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RF_RD(p) pgm_read_float(p)
#define RF_RD_U8(p) ((uint8_t)pgm_read_byte(p))
#define RF_RD_U16(p) ((uint16_t)pgm_read_word(p))
#else
#ifndef PROGMEM
#define PROGMEM
#endif
#define RF_RD(p) (*(p))
#define RF_RD_U8(p) (*(p))
#define RF_RD_U16(p) (*(p))
#endif

static inline float rf_sigmoid(float v) { return 1.0f / (1.0f + expf(-v)); }
static inline float rf_clip(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }
static inline float rf_hsigmoid(float v) { return rf_clip(0.2f * v + 0.5f, 0.0f, 1.0f); }
static inline float rf_qsigmoid(float v) { return rf_clip(0.5f * (v + 1.0f), 0.0f, 1.0f); }
static inline float rf_relu(float v) { return v > 0.0f ? v : 0.0f; }

static inline void rf_mv_dense(const float *w, uint16_t rows, uint16_t cols, const float *x,
                               float *y) {
    while (rows--) {
        const float *xp = x;
        uint16_t n = cols;
        float acc = 0.0f;
        while (n--) acc += RF_RD(w++) * *xp++;
        *y++ = acc;
    }
}
