#if defined(__AVR__)
#include <avr/pgmspace.h>
#define RE_PGM 1 /* constants in flash: the assembler loops read them with LPM */
#define RE_RD_I8(p) ((int8_t)pgm_read_byte(p))
#define RE_RD_I16(p) ((int16_t)pgm_read_word(p))
#define RE_RD_I32(p) ((int32_t)pgm_read_dword(p))
#define RE_RD_U8(p) ((uint8_t)pgm_read_byte(p))
#define RE_RD_U16(p) ((uint16_t)pgm_read_word(p))
#else
#ifndef PROGMEM
#define PROGMEM
#endif
