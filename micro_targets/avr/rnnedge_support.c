/* Support code for the ATmega328P under simavr (keras_rnnedge.micro_targets.harness).
 *
 * main() sets up UART0 as stdout and Timer1, calls rnnedge_user_main() (the program's main,
 * renamed with -Dmain=rnnedge_user_main), prints "@@rnnedge-exit <code>" and stops the
 * simulation with cli(); sleep_cpu() (simavr then quits; its own exit code is always 0).
 *
 * simavr logs UART0 per line to stderr, in ANSI green, with every control character (the
 * newline included) shown as '.', and breaks lines of 256 characters. So the byte stream is
 * escaped: '\\' -> "\\\\", other control or non-ASCII bytes -> "\\xHH", and a line longer than
 * RE_LINE_MAX characters is continued with a "\\" + newline that the harness removes. */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <stdio.h>

#include "rnnedge_target.h"

#define RE_LINE_MAX 200u

extern int rnnedge_user_main(void);

static uint8_t column;

static void uart_raw(uint8_t c) {
    loop_until_bit_is_set(UCSR0A, UDRE0);
    UDR0 = c;
}

static int uart_putchar(char ch, FILE *stream) {
    static const char hex[] = "0123456789abcdef";
    const uint8_t c = (uint8_t)ch;
    (void)stream;
    if (c == '\n') {
        uart_raw('\n');
        column = 0;
        return 0;
    }
    if (column >= RE_LINE_MAX) { /* continuation: "\" + newline, removed by the harness */
        uart_raw('\\');
        uart_raw('\n');
        column = 0;
    }
    if (c == '\\') {
        uart_raw('\\');
        uart_raw('\\');
        column += 2;
    } else if (c < 0x20 || c >= 0x7f) {
        uart_raw('\\');
        uart_raw('x');
        uart_raw((uint8_t)hex[c >> 4]);
        uart_raw((uint8_t)hex[c & 0xf]);
        column += 4;
    } else {
        uart_raw(c);
        ++column;
    }
    return 0;
}

static FILE uart_stream = FDEV_SETUP_STREAM(uart_putchar, NULL, _FDEV_SETUP_WRITE);

/* ---- cycle counter: Timer1 at prescaler 1, overflow interrupt every 65536 cycles ---- */
static volatile uint16_t t1_overflows; /* overflow interrupts executed */
static uint8_t isr_cycles;             /* cycles one overflow interrupt takes (calibrated) */
static uint32_t overhead_cycles;       /* an empty measurement */
static uint8_t calibrated;

ISR(TIMER1_OVF_vect) { ++t1_overflows; }

static void timer_restart(void) {
    const uint8_t sreg = SREG;
    cli();
    TCCR1B = 0;
    TCNT1 = 0;
    t1_overflows = 0;
    TIFR1 = _BV(TOV1);
    TCCR1B = _BV(CS10);
    SREG = sreg;
}

void rnnedge_busy_loop(uint8_t m, uint16_t n) {
    uint16_t t;
    __asm__ __volatile__(
        "1:\n\t"
        "movw %A0, %A2\n" /* 1 */
        "2:\n\t"
        "sbiw %A0, 1\n\t" /* 2 */
        "brne 2b\n\t"     /* 2 taken, 1 not */
        "dec %1\n\t"      /* 1 */
        "brne 1b\n"       /* 2 taken, 1 not */
        : "=&w"(t), "+r"(m)
        : "r"(n));
}

static void calibrate(void);

uint32_t rnnedge_count(void) {
    uint8_t sreg;
    uint16_t low, executed, high;
    if (!calibrated) calibrate();
    sreg = SREG;
    cli();
    low = TCNT1;
    executed = t1_overflows;
    high = executed;
    if ((TIFR1 & _BV(TOV1)) && low < 0x8000u) ++high; /* wrapped, interrupt still pending */
    SREG = sreg;
    return ((((uint32_t)high) << 16) | low) - (uint32_t)executed * isr_cycles;
}

uint32_t rnnedge_count_overhead(void) {
    if (!calibrated) calibrate();
    return overhead_cycles;
}

#define CAL_M 16u
#define CAL_N 65535u

static void calibrate(void) {
    uint32_t t0, t1, small, big;
    uint16_t k;
    calibrated = 1;
    isr_cycles = 0;
    timer_restart();
    t0 = rnnedge_count();
    t1 = rnnedge_count();
    overhead_cycles = t1 - t0;
    timer_restart(); /* no overflow within the next 65536 cycles */
    t0 = rnnedge_count();
    rnnedge_busy_loop(1, 1);
    t1 = rnnedge_count();
    small = t1 - t0; /* = overhead + call + 6 */
    timer_restart();
    t0 = rnnedge_count();
    rnnedge_busy_loop(CAL_M, CAL_N);
    t1 = rnnedge_count();
    k = t1_overflows;
    big = t1 - t0; /* = overhead + call + CAL_M (4 CAL_N + 3) - 1 + k isr */
    big -= small - 6u + (uint32_t)CAL_M * (4u * CAL_N + 3u) - 1u;
    isr_cycles = (uint8_t)((big + k / 2u) / k);
    timer_restart();
}

int main(void) {
    int code;
    UBRR0 = 0;
    UCSR0B = _BV(TXEN0);
    stdout = &uart_stream;
    TCCR1A = 0;
    TIMSK1 = _BV(TOIE1);
    timer_restart();
    sei();
    code = rnnedge_user_main();
    if (column) { /* continue the unfinished line, so the end marker starts a line */
        uart_raw('\\');
        uart_raw('\n');
    }
    cli();
    printf("@@rnnedge-exit %d\n", code); /* -> uart_putchar; nothing to escape */
    loop_until_bit_is_set(UCSR0A, UDRE0);
    sleep_enable();
    sleep_cpu();
    for (;;) {
    }
}
