/* Start-up code for the Cortex-M machines under QEMU (Cortex-M4: mps2-an386; Cortex-M0:
 * microbit), with newlib's rdimon semihosting: the vector table, Reset_Handler (copy .data
 * from its load address, zero .bss, enable the FPU when there is one, start SysTick, open the
 * semihosting handles, exit(main())), and the instruction counter of the machine's
 * rnnedge_target.h (SysTick ticks times RNNEDGE_INSTRUCTIONS_PER_TICK_X2 / 2). Link with the
 * machine's link.ld, --specs=rdimon.specs -nostartfiles. */
#include <stdint.h>
#include <stdlib.h>

#include "rnnedge_target.h"

extern uint32_t __bss_start__, __bss_end__, __stack_top, __data_start__, __data_end__,
    __data_load__;
extern int main(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void SysTick_Handler(void);

#define REG(addr) (*(volatile uint32_t *)(addr))
#define SCB_CPACR REG(0xE000ED88u)
#define SYST_CSR REG(0xE000E010u)
#define SYST_RVR REG(0xE000E014u)
#define SYST_CVR REG(0xE000E018u)
#define SYST_RELOAD 0x00FFFFFFu /* 24-bit counter: 2^24 ticks per wrap */

static volatile uint32_t systick_wraps;

static void Default_Handler(void) {
    for (;;) {
    }
}

static void HardFault_Handler(void) {
    exit(0x7F); /* a fault ends the run with a non-zero exit code instead of hanging */
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top, /* initial stack pointer */
    Reset_Handler,
    Default_Handler,   /* NMI */
    HardFault_Handler, /* HardFault */
    HardFault_Handler, /* MemManage (reserved on ARMv6-M) */
    HardFault_Handler, /* BusFault (reserved on ARMv6-M) */
    HardFault_Handler, /* UsageFault (reserved on ARMv6-M) */
    0, 0, 0, 0,
    Default_Handler, /* SVCall */
    Default_Handler, /* DebugMon */
    0,
    Default_Handler, /* PendSV */
    SysTick_Handler,
};

void SysTick_Handler(void) { ++systick_wraps; }

uint32_t rnnedge_count(void) {
    uint32_t wraps, value;
    do { /* re-read if SysTick wrapped in between */
        wraps = systick_wraps;
        value = SYST_CVR;
    } while (wraps != systick_wraps);
    /* floor(ticks * X2 / 2) modulo 2^32, X2 = 2 instructions per tick: the difference of
     * two counts is exact (to the resolution) while the ticks between them do not wrap */
    const uint32_t ticks = (wraps << 24) + (SYST_RELOAD - value);
    return ticks * (RNNEDGE_INSTRUCTIONS_PER_TICK_X2 / 2u)
           + ((RNNEDGE_INSTRUCTIONS_PER_TICK_X2 & 1u) ? ticks >> 1 : 0u);
}

uint32_t rnnedge_count_overhead(void) { return 0u; }

/* -nostartfiles drops crti/crtn; newlib's __libc_init_array still calls these. */
void _init(void) {}
void _fini(void) {}

void Reset_Handler(void) {
    uint32_t *p;
    const uint32_t *s = &__data_load__;
    for (p = &__data_start__; p < &__data_end__; ++p) *p = *s++;
    for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0u;
#if defined(__ARM_FP)
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access to the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0u;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
    initialise_monitor_handles();
    exit(main());
}
