
static inline void rf_mv_csr_c{c}(const float *val, const uint{c}_t *col, const uint16_t *ptr,
                          uint16_t rows, const float *x, float *y) {{
    uint16_t k = RF_RD_U16(ptr);
    while (rows--) {{
        const uint16_t end = RF_RD_U16(++ptr);
        float acc = 0.0f;
        for (; k < end; ++k) acc += RF_RD(&val[k]) * x[RF_RD_U{c}(&col[k])];
        *y++ = acc;
    }}
}}
