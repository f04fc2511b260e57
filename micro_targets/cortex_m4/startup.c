/* Start-up code for Cortex-M4 under QEMU (mps2-an386), with newlib's rdimon semihosting:
 * the vector table, Reset_Handler (zero .bss, enable the FPU, start SysTick, open the
 * semihosting handles, exit(main())), and the instruction counter of rnnedge_target.h.
 * Link with link.ld, --specs=rdimon.specs -nostartfiles. */
#include <stdint.h>
#include <stdlib.h>

#include "rnnedge_target.h"

extern uint32_t __bss_start__, __bss_end__, __stack_top;
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
    HardFault_Handler, /* MemManage */
    HardFault_Handler, /* BusFault */
    HardFault_Handler, /* UsageFault */
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
    return ((wraps << 24) + (SYST_RELOAD - value)) * RNNEDGE_COUNT_RESOLUTION;
}

uint32_t rnnedge_count_overhead(void) { return 0u; }

/* -nostartfiles drops crti/crtn; newlib's __libc_init_array still calls these. */
void _init(void) {}
void _fini(void) {}

void Reset_Handler(void) {
    uint32_t *p;
    for (p = &__bss_start__; p < &__bss_end__; ++p) *p = 0u;
    SCB_CPACR |= 0xFu << 20; /* CP10, CP11: full access to the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0u;
    SYST_CSR = 0x7u; /* processor clock, interrupt on wrap, enable */
    initialise_monitor_handles();
    exit(main());
}
