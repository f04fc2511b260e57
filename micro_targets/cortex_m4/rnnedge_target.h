/* Target support for keras_rnnedge.micro_targets.harness: Cortex-M4 under QEMU (mps2-an386).
 *
 * QEMU does not model cycles. Run with `-icount shift=0`: virtual time then advances 1 ns per
 * executed instruction, and SysTick (25 MHz on mps2-an386) ticks once per 40 instructions, so
 * rnnedge_count() returns INSTRUCTIONS (never call them cycles), with a resolution of 40:
 * time many steps at once. */
#ifndef RNNEDGE_TARGET_H_
#define RNNEDGE_TARGET_H_

#include <stdint.h>

#define RNNEDGE_COUNT_UNIT "instructions"
#define RNNEDGE_COUNT_RESOLUTION 40u
#define RNNEDGE_INSTRUCTIONS_PER_TICK_X2 80u
#define RNNEDGE_TARGET "cortex_m4"

/* Instructions executed since reset (wraps at 2^32), resolution 40. */
uint32_t rnnedge_count(void);
/* What an empty measurement (two back-to-back rnnedge_count() calls) reads; 0 here, since it is
 * far below the resolution. Subtract it from every measurement. */
uint32_t rnnedge_count_overhead(void);
#define rnnedge_instructions rnnedge_count

#endif /* RNNEDGE_TARGET_H_ */
