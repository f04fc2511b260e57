#!/bin/sh
# Install the microcontroller toolchains and emulators used by the `toolchain` tests
# (tests/test_targets_emulated.py) and by keras_rnnedge.micro_targets.harness:
#   Cortex-M4: arm-none-eabi-gcc + newlib (rdimon semihosting), qemu-system-arm (mps2-an386)
#   ATmega328P: avr-gcc + avr-libc + avr binutils, simavr
#   host: clang (the generated C is also built with clang's warnings) and its runtime library
#   libclang-rt-<version>-dev (libFuzzer and the sanitizers: keras_rnnedge.micro_targets.fuzz)
# Idempotent: does nothing when every tool is already present. Debian/Ubuntu (apt-get) only.
set -eu

# libFuzzer comes with clang's runtime package, named after clang's major version (14 on
# Debian 12 bookworm).
clang_major() {
    major=""
    if command -v clang >/dev/null 2>&1; then
        major=$(clang -dumpversion 2>/dev/null | cut -d. -f1)
    elif command -v apt-cache >/dev/null 2>&1; then
        major=$(apt-cache policy clang 2>/dev/null \
                | sed -n 's/^ *Candidate: *\([0-9]*:\)\{0,1\}\([0-9][0-9]*\).*/\2/p')
    fi
    echo "${major:-14}"
}

packages() {
    echo "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-avr avr-libc" \
         "binutils-avr simavr clang libclang-rt-$(clang_major)-dev"
}

missing=""
for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm avr-gcc avr-size simavr clang; do
    command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
# newlib for arm (semihosting specs) and avr-libc headers: the compilers alone are not enough.
if command -v arm-none-eabi-gcc >/dev/null 2>&1; then
    specs=$(arm-none-eabi-gcc -print-file-name=rdimon.specs)
    [ -f "$specs" ] || missing="$missing newlib(rdimon.specs)"
fi
if command -v avr-gcc >/dev/null 2>&1; then
    echo '#include <avr/io.h>' | avr-gcc -mmcu=atmega328p -E -x c - >/dev/null 2>&1 \
        || missing="$missing avr-libc(avr/io.h)"
fi
# libFuzzer and the sanitizer runtimes: a trivial fuzz target must link.
if command -v clang >/dev/null 2>&1; then
    dir=$(mktemp -d)
    printf '%s\n' '#include <stddef.h>' '#include <stdint.h>' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n);' \
        'int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { (void)d; (void)n; return 0; }' \
        > "$dir/fuzz.c"
    clang -fsanitize=fuzzer,address,undefined "$dir/fuzz.c" -o "$dir/fuzz" >/dev/null 2>&1 \
        || missing="$missing libclang-rt(libFuzzer)"
    rm -rf "$dir"
fi

if [ -z "$missing" ]; then
    echo "install-toolchains: all present (arm-none-eabi-gcc, newlib, qemu-system-arm," \
         "avr-gcc, avr-libc, simavr, clang, libFuzzer); nothing to do."
    exit 0
fi

echo "install-toolchains: missing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-toolchains: not root; cannot install. Run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends $(packages)" >&2
    echo "(or: sudo $0)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-toolchains: apt-get not found; install these Debian packages (or their" \
         "equivalents) by hand: $(packages)" >&2
    exit 1
fi

echo "+ apt-get update"
apt-get update
PACKAGES=$(packages)
echo "+ apt-get install -y --no-install-recommends $PACKAGES"
# shellcheck disable=SC2086  # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
echo "install-toolchains: done."
