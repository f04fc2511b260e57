"""C array stage: TFLite flatbuffer bytes → a ``.h``/``.cc`` pair that compiles into firmware.

The layout follows TensorFlow Lite Micro's own tooling: the model is
``alignas(16) const unsigned char g_<name>_model_data[]`` (TFLM reads the flatbuffer in place,
and its kernels expect 16-byte alignment) plus ``const unsigned int g_<name>_model_data_len``.
The ``.cc`` includes its header, so both constants get external linkage.

With ``progmem=True`` (AVR boards) the array carries ``PROGMEM`` so that it stays in flash
(read it with ``pgm_read_byte``); elsewhere ``PROGMEM`` is defined empty, so the same ``.cc``
still compiles on the host.

Example::

    files = c_array(flatbuffer, "HAR FastGRNN", quantization="int8")
    # {"har_fastgrnn_model_data.h": "...", "har_fastgrnn_model_data.cc": "..."}
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["BYTES_PER_LINE", "CPP_KEYWORDS", "RESERVED_NAMES", "c_array", "c_identifier",
           "identifier_note"]

#: Bytes per line of the generated array (TFLM's generator uses 12).
BYTES_PER_LINE = 12
#: Longest identifier made by :func:`c_identifier` (Arduino sketch names stop at 63 characters).
MAX_IDENTIFIER_LENGTH = 63
#: AVR objects are limited to PTRDIFF_MAX = 32767 bytes (16-bit pointers).
AVR_MAX_ARRAY_BYTES = 32767

#: C and C++ keywords and alternative tokens: none of them can name anything.
CPP_KEYWORDS = frozenset("""
    alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t char16_t
    char32_t class compl concept const consteval constexpr constinit const_cast continue
    co_await co_return co_yield decltype default delete do double dynamic_cast else enum
    explicit export extern false float for friend goto if inline int long mutable namespace new
    noexcept not not_eq nullptr operator or or_eq private protected public register
    reinterpret_cast requires restrict return short signed sizeof static static_assert
    static_cast struct switch template this thread_local throw true try typedef typeid typename
    union unsigned using virtual void volatile wchar_t while xor xor_eq
    _Alignas _Alignof _Atomic _Bool _Complex _Generic _Imaginary _Noreturn _Static_assert
    _Thread_local
""".split())


#: Standard C headers: the generated files are ``<id>.h``/``<id>.c`` in a directory that the
#: builds put first on the include path (``-I``), where ``<id>.h`` would replace the header.
_C_HEADERS = frozenset("""
    assert complex ctype errno fenv float inttypes iso646 limits locale math setjmp signal
    stdalign stdarg stdatomic stdbit stdbool stdckdint stddef stdint stdio stdlib stdnoreturn
    string tgmath threads time uchar wchar wctype arm_acle
""".split())
#: Files beside the model in the programs and projects built around it.
_SUPPORT_FILES = frozenset(("main", "startup", "rnnedge_target", "rnnedge_support", "arduino"))
#: Names that are valid identifiers but cannot name a model's files (see :func:`c_identifier`).
RESERVED_NAMES = _C_HEADERS | _SUPPORT_FILES


def _reserved_reason(ident: str) -> str | None:
    if ident in CPP_KEYWORDS:
        return "a C/C++ keyword"
    if ident == "main":
        return ("the program's entry point: main.c of the test programs and of the Cortex-M "
                "project would replace the model's C file")
    if ident == "arduino":
        return "the Arduino core's header (Arduino.h on case-insensitive file systems)"
    if ident in _SUPPORT_FILES:
        return ("the name of a file beside the model in the programs built around it "
                "(startup.c, rnnedge_target.h, rnnedge_support.c)")
    if ident in _C_HEADERS:
        return (f"a standard header: the model's {ident}.h would replace <{ident}.h> on the "
                "include path")
    return None


def _clean(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"Expected name to be a str, but got {type(name).__name__}: {name!r}.")
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    ident = re.sub(r"[^a-z0-9]+", "_", ascii_name.lower()).strip("_")
    ident = ident[:MAX_IDENTIFIER_LENGTH].rstrip("_")
    if not ident:
        return "model"
    if ident[0].isdigit():
        ident = f"model_{ident}"[:MAX_IDENTIFIER_LENGTH].rstrip("_")
    return ident


def c_identifier(name: str) -> str:
    """A valid C (and C++) identifier made from any model name.

    Accents are stripped (``"Café"`` → ``"cafe"``), the name is lowercased, every run of other
    characters becomes one ``_`` (so the result never holds ``__``, which C++ reserves), leading
    and trailing ``_`` are dropped; a leading digit gets the prefix ``model_``, and a name with
    nothing left becomes ``model``. A C/C++ keyword or a :data:`RESERVED_NAMES` entry (a
    standard C header such as ``math``, ``main``, the files of the C runtime support) gets the
    suffix ``_model``: the identifier names the generated files (``<id>.c``, ``<id>.h``) as well
    as the symbols; :func:`identifier_note` says why a name was changed.

    Examples:
        >>> c_identifier("my-model 2"), c_identifier("2fast"), c_identifier("int")
        ('my_model_2', 'model_2fast', 'int_model')
        >>> c_identifier("main"), c_identifier("Math")
        ('main_model', 'math_model')
    """
    ident = _clean(name)
    if _reserved_reason(ident) is not None:
        ident = f"{ident}_model"
    return ident


def identifier_note(name: str) -> str | None:
    """Why :func:`c_identifier` added ``_model`` to ``name`` (one sentence), or ``None``.

    Example:
        >>> identifier_note("my model") is None
        True
    """
    base = _clean(name)
    reason = _reserved_reason(base)
    if reason is None:
        return None
    return (f"the name {name!r} gives the C identifier {base!r}, which is {reason}; the files "
            f"and symbols use {base + '_model'!r} instead (choose another name to avoid the "
            "suffix)")


def comment_text(text: str) -> str:
    """``text`` made safe for a ``//`` comment: one line, printable ASCII (escapes otherwise)."""
    text = str(text).encode("ascii", "backslashreplace").decode("ascii")
    return "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in text)


def _describe(name: str, size: int, model_name: str | None, quantization: str | None) -> str:
    what = f'Model "{comment_text(model_name)}"' if model_name else f"Model {name}"
    quant = f", {comment_text(quantization)} quantization" if quantization else ""
    return f"// {what}: {size:,} bytes{quant}.\n"


def c_array(flatbuffer: bytes, name: str, *, progmem: bool = False,
            model_name: str | None = None, quantization: str | None = None) -> dict[str, str]:
    """The flatbuffer as a C array: a header and a source file.

    Args:
        flatbuffer: the TFLite model bytes (anything bytes-like, not empty).
        name: the model name; :func:`c_identifier` makes the ``<id>`` of every symbol and file.
        progmem: put the array in AVR flash (``PROGMEM``, with ``<avr/pgmspace.h>``).
        model_name: the model's own name, for the header comment (default: ``name``).
        quantization: for the header comment (``"int8"``...).

    Returns:
        ``{"<id>_model_data.h": header, "<id>_model_data.cc": source}``, declaring and defining
        ``g_<id>_model_data`` and ``g_<id>_model_data_len``.

    Raises:
        TypeError: ``flatbuffer`` is not bytes-like.
        ValueError: ``flatbuffer`` is empty, or too large for AVR with ``progmem=True``.
    """
    try:
        data = bytes(memoryview(flatbuffer))
    except TypeError:
        raise TypeError(f"Expected flatbuffer to be bytes, but got "
                        f"{type(flatbuffer).__name__}.") from None
    if not data:
        raise ValueError("Received an empty flatbuffer (0 bytes); expected the bytes of a "
                         "converted TFLite model.")
    if progmem and len(data) > AVR_MAX_ARRAY_BYTES:
        raise ValueError(
            f"The flatbuffer has {len(data):,} bytes; with progmem=True (AVR) one array can hold "
            f"at most {AVR_MAX_ARRAY_BYTES:,} bytes. Compress the model further, or target a "
            "32-bit board (progmem=False).")
    ident = c_identifier(name)
    symbol, guard = f"g_{ident}_model_data", f"{ident.upper()}_MODEL_DATA_H_"
    header_name = f"{ident}_model_data.h"
    banner = (_describe(ident, len(data), model_name or name, quantization)
              + "// TFLite flatbuffer as a C array, generated by keras_rnnedge. Do not edit.\n")
    flash = ("// On AVR the array is in flash (PROGMEM): read it with pgm_read_byte().\n"
             if progmem else "")
    header = (
        f"{banner}\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"{flash}"
        "// Aligned to 16 bytes: TFLite Micro reads the model in place.\n"
        f"extern const unsigned char {symbol}[];\n"
        f"extern const unsigned int {symbol}_len;\n\n"
        f"#endif  // {guard}\n")
    lines = []
    for start in range(0, len(data), BYTES_PER_LINE):
        chunk = data[start:start + BYTES_PER_LINE]
        lines.append("    " + ", ".join(f"0x{b:02x}" for b in chunk))
    body = ",\n".join(lines)
    pgm = ("\n#ifdef __AVR__\n#include <avr/pgmspace.h>\n#elif !defined(PROGMEM)\n"
           "#define PROGMEM\n#endif\n" if progmem else "")
    attribute = " PROGMEM" if progmem else ""
    source = (
        f"{banner}\n"
        f'#include "{header_name}"\n'
        f"{pgm}\n"
        f"alignas(16) const unsigned char {symbol}[]{attribute} = {{\n{body}\n}};\n"
        f"const unsigned int {symbol}_len = {len(data)};\n")
    return {header_name: header, f"{ident}_model_data.cc": source}
