/* Target support for keras_rnnedge.micro_targets.harness: Cortex-M0 under QEMU (microbit,
 * nRF51822: 256 KB flash, 16 KB RAM).
 *
 * QEMU does not model cycles. Run with `-icount shift=0`: virtual time then advances 1 ns per
 * executed instruction, and SysTick (the 16 MHz processor clock of the nRF51) ticks once per
 * 62.5 instructions, so rnnedge_count() returns INSTRUCTIONS (never call them cycles), with a
 * resolution of 62.5: time many steps at once. */
#ifndef RNNEDGE_TARGET_H_
#define RNNEDGE_TARGET_H_

#include <stdint.h>

#define RNNEDGE_COUNT_UNIT "instructions"
#define RNNEDGE_COUNT_RESOLUTION 63u
#define RNNEDGE_INSTRUCTIONS_PER_TICK_X2 125u
#define RNNEDGE_TARGET "cortex_m0"

/* Instructions executed since reset (wraps at 2^32), resolution 62.5. */
uint32_t rnnedge_count(void);
/* What an empty measurement (two back-to-back rnnedge_count() calls) reads; 0 here, since it is
 * below the resolution. Subtract it from every measurement. */
uint32_t rnnedge_count_overhead(void);
#define rnnedge_instructions rnnedge_count

#endif /* RNNEDGE_TARGET_H_ */
