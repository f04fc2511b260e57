#!/bin/sh
# Install the microcontroller toolchains and emulators used by the `toolchain` tests
# (tests/test_targets_emulated.py) and by keras_rnnedge.micro_targets.harness:
#   Cortex-M4: arm-none-eabi-gcc + newlib (rdimon semihosting), qemu-system-arm (mps2-an386)
#   ATmega328P: avr-gcc + avr-libc + avr binutils, simavr
# Idempotent: does nothing when every tool is already present. Debian/Ubuntu (apt-get) only.
set -eu

PACKAGES="gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm gcc-avr avr-libc binutils-avr simavr"

missing=""
for tool in arm-none-eabi-gcc arm-none-eabi-size qemu-system-arm avr-gcc avr-size simavr; do
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

if [ -z "$missing" ]; then
    echo "install-toolchains: all present (arm-none-eabi-gcc, newlib, qemu-system-arm," \
         "avr-gcc, avr-libc, simavr); nothing to do."
    exit 0
fi

echo "install-toolchains: missing:$missing"
if [ "$(id -u)" -ne 0 ]; then
    echo "install-toolchains: not root; cannot install. Run as root:" >&2
    echo "    apt-get update && apt-get install -y --no-install-recommends $PACKAGES" >&2
    echo "(or: sudo $0)" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-toolchains: apt-get not found; install these Debian packages (or their" \
         "equivalents) by hand: $PACKAGES" >&2
    exit 1
fi

echo "+ apt-get update"
apt-get update
echo "+ apt-get install -y --no-install-recommends $PACKAGES"
# shellcheck disable=SC2086  # word splitting of the package list is intended
DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PACKAGES
echo "install-toolchains: done."
