"""The board catalog: the microcontroller boards a model can be converted and audited for.

The catalog is data (``boards.json`` next to this module), loaded once at import into
:data:`BOARDS`. Look a board up by its key or an alias with :func:`get_board`::

    >>> from keras_rnnedge.micro_targets.boards import get_board
    >>> board = get_board("Nano 33 BLE Sense")
    >>> board.key, board.ram_bytes, board.tflm
    ('nano33ble', 262144, True)

Names are matched case-insensitively, ignoring spaces, ``-`` and ``_``.

``tflm_runtime_flash_bytes`` is an estimate, not a measurement: the TFLite Micro runtime plus a
few int8 kernels, without the board's core/framework. The TFLite Micro documentation states
that the core runtime fits in 16 KB on a Cortex-M3, and sketches with a handful of int8 kernels
are typically 50-100 KB; the catalog takes the conservative end (100 KiB on Arm Cortex-M,
128 KiB assumed on Xtensa). ``boards.json`` carries the same explanation.
"""

from __future__ import annotations

import dataclasses
import json
import re
from importlib import resources

__all__ = ["ARCHES", "BOARDS", "Board", "get_board", "load_boards"]

#: Instruction-set families of the catalog (``host`` is the x86-64 emulation pseudo-target).
ARCHES = ("arm", "avr", "xtensa", "host")
_CATALOG = "boards.json"


@dataclasses.dataclass(frozen=True)
class Board:
    """One target board.

    Attributes:
        key: the CLI name (``nano33ble``, ``uno``...).
        display_name: human-readable name (``Arduino Nano 33 BLE Sense``).
        aliases: other accepted names.
        mcu: the microcontroller (``nRF52840``).
        core: the CPU core (``Cortex-M4F``).
        arch: one of :data:`ARCHES`.
        clock_hz: CPU clock (``None`` for the host).
        flash_bytes: program flash of the chip or module (``None``: no limit).
        ram_bytes: data RAM (``None``: no limit).
        fpu: has a hardware floating-point unit.
        tflm: TFLite Micro can run on it (it needs a 32-bit platform: not on AVR).
        progmem: constant data must be placed with ``PROGMEM`` (AVR).
        arduino_fqbn: fully qualified board name for arduino-cli (``None``: not an Arduino
            target).
        platformio_board, platformio_platform: PlatformIO ``board`` and ``platform`` ids.
        tflm_runtime_flash_bytes: ESTIMATED flash of the TFLite Micro runtime and a few int8
            kernels, without the board core (``None`` where TFLite Micro does not run or no
            limit is modelled).
        notes: caveats (bootloader, usable RAM...).
    """

    key: str
    display_name: str
    aliases: tuple[str, ...]
    mcu: str
    core: str
    arch: str
    clock_hz: int | None
    flash_bytes: int | None
    ram_bytes: int | None
    fpu: bool
    tflm: bool
    progmem: bool
    arduino_fqbn: str | None
    platformio_board: str | None
    platformio_platform: str | None
    tflm_runtime_flash_bytes: int | None
    notes: str = ""

    def __post_init__(self):
        if self.arch not in ARCHES:
            raise ValueError(f'Expected arch to be one of {_quoted(ARCHES)}, but got '
                             f'"{self.arch}" (board "{self.key}").')
        for field in ("clock_hz", "flash_bytes", "ram_bytes", "tflm_runtime_flash_bytes"):
            value = getattr(self, field)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value <= 0):
                raise ValueError(f"Expected {field} of board \"{self.key}\" to be a positive "
                                 f"integer or None, but got {value!r}.")
        object.__setattr__(self, "aliases", tuple(self.aliases))

    @property
    def names(self) -> tuple[str, ...]:
        """The key and every alias."""
        return (self.key, *self.aliases)


_FIELDS = tuple(f.name for f in dataclasses.fields(Board))
_TYPES = {
    "key": str, "display_name": str, "aliases": list, "mcu": str, "core": str, "arch": str,
    "clock_hz": (int, type(None)), "flash_bytes": (int, type(None)),
    "ram_bytes": (int, type(None)), "fpu": bool, "tflm": bool, "progmem": bool,
    "arduino_fqbn": (str, type(None)), "platformio_board": (str, type(None)),
    "platformio_platform": (str, type(None)), "tflm_runtime_flash_bytes": (int, type(None)),
    "notes": str,
}


def _normalize(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", str(name)).lower()


def _quoted(names) -> str:
    return ", ".join(f'"{n}"' for n in names)


def _board(entry: dict, source: str) -> Board:
    missing = [f for f in _FIELDS if f not in entry]
    unknown = [f for f in entry if f not in _FIELDS]
    where = f'board "{entry.get("key", "?")}" in {source}'
    if missing or unknown:
        raise ValueError(f"Expected {where} to have exactly the fields {', '.join(_FIELDS)}; "
                         f"missing: {', '.join(missing) or 'none'}, unknown: "
                         f"{', '.join(unknown) or 'none'}.")
    for field, expected in _TYPES.items():
        if not isinstance(entry[field], expected):
            raise ValueError(f"Expected {field} of {where} to be of type {expected}, but got "
                             f"{entry[field]!r}.")
    return Board(**{**entry, "aliases": tuple(entry["aliases"])})


def load_boards(path=None) -> dict[str, Board]:
    """Read a board catalog (default: the bundled ``boards.json``), keyed by board key.

    Raises:
        ValueError: a board lacks a field, has an unknown one or a wrongly typed value, or two
            boards share a name (key or alias, after normalization).
    """
    if path is None:
        source = resources.files(__package__).joinpath(_CATALOG)
        text = source.read_text(encoding="utf-8")
    else:
        source = path
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    entries = json.loads(text).get("boards")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f'Expected {source} to hold a non-empty "boards" list.')
    boards: dict[str, Board] = {}
    seen: dict[str, str] = {}
    for entry in entries:
        board = _board(entry, str(source))
        for name in board.names:
            other = seen.setdefault(_normalize(name), board.key)
            if other != board.key or (name == board.key and board.key in boards):
                raise ValueError(f'Board name "{name}" is used by both "{other}" and '
                                 f'"{board.key}" in {source}.')
        boards[board.key] = board
    return boards


#: Every board of the catalog, keyed by :attr:`Board.key`, in catalog order.
BOARDS: dict[str, Board] = load_boards()
_BY_NAME = {_normalize(name): board for board in BOARDS.values() for name in board.names}


def get_board(name_or_alias: str | Board) -> Board:
    """The board with this key or alias (a :class:`Board` is returned as is).

    Raises:
        ValueError: no board has this name; the message lists the keys.
    """
    if isinstance(name_or_alias, Board):
        return name_or_alias
    board = _BY_NAME.get(_normalize(name_or_alias)) if isinstance(name_or_alias, str) else None
    if board is None:
        raise ValueError(f"Expected target to be one of {_quoted(BOARDS)}, but got "
                         f'"{name_or_alias}".')
    return board
