"""Cortex-M0+ cycles from a QEMU execution trace, with the core's published instruction timings.

QEMU does not model cycles. For the Cortex-M0 target (``harness.build_and_run_arm("cortex_m0",
..., trace=True)``), QEMU logs every translated block's instructions (``-d in_asm``) and every
executed block (``-d exec,nochain``); this module replays that log and adds up, per executed
instruction, its cycles on a Cortex-M0+ with zero-wait-state memory (Arm, Cortex-M0+ Technical
Reference Manual, DDI 0484C, Table 3-1 "Cortex-M0+ instruction set summary"):

* data processing, shifts, extends, compares, moves, ``ADR``, ``MULS`` (the single-cycle
  multiplier that the MKR1000's SAMD21 and most M0+ parts implement): 1;
* a load or store of one register (``LDR*``, ``STR*``, also PC-relative): 2;
* ``LDM``/``STM``/``PUSH``/``POP`` of N registers: 1 + N; ``POP`` including the PC: 3 + N
  (N counts the other registers);
* ``B<cond>``: 2 taken, 1 not taken (taken when the next executed block starts at its target);
  ``B``: 2; ``BL``: 3; ``BX``/``BLX``: 2; an ``ADD``/``MOV`` writing the PC: 2;
* ``MRS``/``MSR``, ``DMB``/``DSB``/``ISB``: 3; ``WFI``/``WFE``: 2; ``SVC``/``BKPT``
  (semihosting): 1 (they lie outside measured regions).

The program brackets what it measures between calls of ``rnnedge_count()`` (as the harness
mains do: ``t0 = rnnedge_count(); ...; t1 = rnnedge_count();``); :func:`cycles_between_counts`
returns the estimated cycles between the end of call 2k and the start of call 2k + 1, for every
k. Flash wait states (e.g. one at 48 MHz on the SAMD21) are not modelled: the figures are for
zero-wait-state memory, as the table is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["COUNT_FUNCTION", "cycles_between_counts", "instruction_cycles"]

COUNT_FUNCTION = "rnnedge_count"

_IN = re.compile(r"^IN: ?(\S*)")
_INSN = re.compile(r"^0x([0-9a-f]+):\s+(?:[0-9a-f]{4}(?: [0-9a-f]{4})?)\s+(\S+)\s*(.*)$")
_TRACE = re.compile(r"^Trace \d+: (0x[0-9a-f]+) \[[0-9a-f]+/([0-9a-f]+)/[^\]]*\]\s*(\S*)")
_TARGET = re.compile(r"#(0x[0-9a-f]+|\d+)")
_CONDITIONS = ("eq", "ne", "cs", "hs", "cc", "lo", "mi", "pl", "vs", "vc", "hi", "ls", "ge",
               "lt", "gt", "le")


def _registers(operands: str) -> list[str]:
    inside = operands[operands.find("{") + 1:operands.rfind("}")]
    return [r.strip() for r in inside.split(",") if r.strip()]


def instruction_cycles(mnemonic: str, operands: str, taken: bool | None = None) -> int:
    """Cycles of one ARMv6-M instruction on the Cortex-M0+ (see the module docstring);
    ``taken`` for a conditional branch."""
    m = mnemonic.lower().split(".")[0]
    ops = operands.lower()
    if m in ("push", "pop", "ldm", "ldmia", "ldmfd", "stm", "stmia", "stmea"):
        regs = _registers(ops)
        if m == "pop" and "pc" in regs:
            return 3 + len(regs) - 1
        return 1 + len(regs)
    if m.startswith("ldr") or m.startswith("str"):
        return 2
    if m == "b":
        return 2
    if m.startswith("b") and m[1:] in _CONDITIONS:
        return 2 if taken else 1
    if m == "bl":
        return 3
    if m in ("bx", "blx"):
        return 2
    if m in ("mrs", "msr", "dmb", "dsb", "isb"):
        return 3
    if m in ("wfi", "wfe"):
        return 2
    if m in ("add", "mov") and ops.split(",")[0].strip() == "pc":
        return 2
    return 1


@dataclass
class _Block:
    """A translated block: its instructions and the target of a final conditional branch."""

    pc: int
    cycles_not_taken: int
    branch_target: int | None  # a conditional branch ending the block
    name: str


def _block(insns: list[tuple[int, str, str]], name: str) -> _Block:
    total = sum(instruction_cycles(m, o, taken=False) for _, m, o in insns)
    target = None
    if insns:
        _, m, o = insns[-1]
        ml = m.lower().split(".")[0]
        if ml.startswith("b") and ml[1:] in _CONDITIONS:
            hit = _TARGET.search(o)
            if hit:
                target = int(hit.group(1), 0)
    return _Block(insns[0][0] if insns else -1, total, target, name)


def cycles_between_counts(log: str, count_function: str = COUNT_FUNCTION) -> list[int]:
    """Estimated Cortex-M0+ cycles of each region ``[end of call 2k, start of call 2k+1]`` of
    ``count_function`` in a QEMU ``-d in_asm,exec,nochain`` log (see the module docstring).

    Raises:
        ValueError: the log holds no executed block (not such a log), or an executed block whose
            translation is not in it.
    """
    blocks: dict[str, _Block] = {}  # host address of a translation -> its block
    by_pc: dict[int, _Block] = {}  # guest pc -> the latest translation starting there
    current: list[tuple[int, str, str]] | None = None
    name = ""
    executed: list[tuple[_Block, int]] = []  # (block, guest pc) in execution order
    for line in log.splitlines():
        m = _IN.match(line)
        if m:
            current, name = [], m.group(1)
            continue
        if current is not None:
            mi = _INSN.match(line)
            if mi:
                current.append((int(mi.group(1), 16), mi.group(2), mi.group(3)))
                continue
            if not line.strip():
                if current:
                    block = _block(current, name)
                    by_pc[block.pc] = block
                current = None
            continue
        mt = _TRACE.match(line)
        if mt:
            host, pc = mt.group(1), int(mt.group(2), 16)
            block = blocks.get(host)
            if block is None or block.pc != pc:  # first execution of this translation
                if pc not in by_pc:
                    raise ValueError(
                        f"The trace executes a block at pc 0x{pc:x} whose translation is not "
                        "in the log; expected a QEMU log of -d in_asm,exec,nochain from the "
                        "start of the run.")
                block = blocks[host] = by_pc[pc]
            executed.append((block, pc))
    if not executed:
        raise ValueError("Expected a QEMU log of -d in_asm,exec,nochain with executed blocks "
                         "('Trace' lines), but found none.")
    regions: list[int] = []
    calls, total, in_previous = 0, 0, False
    for i, (block, _) in enumerate(executed):
        in_count = block.name == count_function
        if in_count and not in_previous:  # a call of the counter starts
            calls += 1
            if calls % 2 == 0:  # it closes the region opened by the call before
                regions.append(total)
            total = 0
        elif not in_count and calls % 2 == 1:  # between call 2k + 1 and call 2k + 2
            taken = (block.branch_target is not None and i + 1 < len(executed)
                     and executed[i + 1][1] == block.branch_target)
            total += block.cycles_not_taken + (1 if taken else 0)
        in_previous = in_count
    return regions
