"""Microcontroller targets: board catalog, C runtime, host/QEMU/simavr harnesses."""
