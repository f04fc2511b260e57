"""The standalone C path: a trained model → integer model (:mod:`.intmodel`, the oracle) →
C99 (:mod:`.cgen`; the float build :mod:`.cgen_float`; the loops of a declared cell step:
:mod:`.schedule`) → Arduino sketch and Cortex-M project (:mod:`.cproject`);
:func:`.cexport.convert_c`
runs it with a check after each stage."""

from importlib import resources


def runtime_text(name: str) -> str:
    """The text of a C runtime file (``runtime/<name>``): the generators inline it into every
    model's ``.c`` (after substituting its placeholders), so the generated model is one file
    pair with no include path to set up."""
    return (resources.files(__name__) / "runtime" / name).read_text()
