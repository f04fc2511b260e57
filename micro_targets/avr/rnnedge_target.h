/* Target support for keras_rnnedge.micro_targets.harness: ATmega328P (16 MHz) under simavr.
 *
 * rnnedge_support.c provides main(): it sets up UART0 as stdout, runs the program's own main
 * (compiled as rnnedge_user_main), prints an end-of-run line with its return value, then stops
 * the simulation with cli(); sleep_cpu(). Output is escaped for simavr's UART log, which the
 * harness decodes (see rnnedge_support.c).
 *
 * rnnedge_count() returns CPU CYCLES, exactly: Timer1 at prescaler 1 plus an overflow counter,
 * minus the cycles spent in the overflow interrupt itself (calibrated on the first call against
 * a busy loop of known length). Subtract rnnedge_count_overhead() (an empty measurement) from
 * every t1 - t0. */
#ifndef RNNEDGE_TARGET_H_
#define RNNEDGE_TARGET_H_

#include <stdint.h>

#define RNNEDGE_COUNT_UNIT "cycles"
#define RNNEDGE_COUNT_RESOLUTION 1u
#define RNNEDGE_TARGET "avr"

/* CPU cycles since the first call, excluding the timer's own overflow interrupts. */
uint32_t rnnedge_count(void);
/* t1 - t0 of two back-to-back rnnedge_count() calls (the cost of one measurement). */
uint32_t rnnedge_count_overhead(void);
/* Busy loop of exactly m * (4 n + 3) - 1 cycles plus a constant call overhead (m, n >= 1). */
void rnnedge_busy_loop(uint8_t m, uint16_t n);
#define rnnedge_cycles rnnedge_count

#endif /* RNNEDGE_TARGET_H_ */
