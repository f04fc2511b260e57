"""A recurrent cell's step, declared once.

A :class:`CellStep` states what one time step of a cell computes, as data: the **state layout**
(named vectors with their sizes and how their number format is chosen), the **biases** and
**scalars** it reads, the **activations** it allows, and the **gate equations**: a small graph of
matrix products over named matrices (``kernel``, ``recurrent_kernel``: whatever
:mod:`~keras_rnnedge.matrices` family parameterizes them) and element-wise operations. The
converters interpret this one declaration four ways: the float forward pass that calibrates the
integer formats, the integer oracle, the integer C and the float C. A new cell kind is one
:class:`CellStep` plus one :func:`register_step` entry; nothing in the converters names a kind.

The equations are written with a :class:`StepBuilder` (``b``) and return the new value of every
state vector::

    def equations(self, b, cell):
        a = b.add(b.product("kernel", b.input()), b.product("recurrent_kernel", b.state("h")))
        c = b.act("activation", b.add(a, b.bias("bias")), name="c")
        return {"h": b.add(b.mul(b.scalar("alpha", like="h"), c),
                           b.mul(b.scalar("beta"), b.state("h")))}

Operations and their integer meaning (``Q``: the model's activation format; every integer
value is an ``int32`` with a power-of-two format; see :mod:`keras_rnnedge.converters.c.intmodel`):

- ``input()``, ``state(name)``: the layer input and a state vector (``int16``, in their formats);
- ``product(matrix, v, gate=g)``: rows ``g * w ... (g + 1) * w`` of ``v @ M`` (``w`` the
  matrix's gate width: ``units`` unless :meth:`CellStep.widths` says otherwise), in ``Q``;
- ``bias(name, gate=g)``: a bias slice (``int32`` in ``Q``); ``scalar(name, like=s)``: a
  constant in the format of state ``s`` (in ``Q`` without ``like``); ``one()``: 1 in ``Q``;
- ``add``/``sub``: ``sat32`` of the sum (both operands in one format);
- ``mul(a, b, like=s)``: ``sat32(rshift(a * b, ...))`` in the format of state ``s`` (without
  ``like``: ``fa + fb - Q``, so a product with a ``Q`` value keeps the other's format);
- ``act(role, v, clip=False)``: the cell's ``activation`` or ``recurrent_activation`` in the
  format of ``v``; with ``clip``, a ReLU is clipped at 1 (FastGRNN's candidate);
- ``rescale(v, like=s)``: ``v`` converted to the format of state ``s`` (``Q`` without ``like``);
- ``sat16(v)``: saturated to ``int16``; ``vector(v)``: saturated to ``int16`` and kept as a
  whole vector, so that a later ``product`` can read it (GRU's ``r * h``);
  ``vector(v, name=n, calibrated=True)``: the same in its own format, chosen from the float
  forward pass like a calibrated state vector (the ReLU hidden layer of an H-LSTM gate, whose
  values exceed 1); ``v`` is rescaled to that format before the saturation.

The new value of each state vector is converted to its format and saturated to ``int16``. In
float arithmetic every operation is the exact one (``rescale``, ``sat16``, ``vector`` are the
identity), so the declaration is also the float model of the step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = [
    "ACTIVATION_TABLE",
    "ActivationInfo",
    "CellStep",
    "Node",
    "STEPS",
    "StateVector",
    "StepBuilder",
    "StepGraph",
    "register_step",
    "step_of",
]

#: The activation roles a step may use: the attribute of the cell holding each activation.
ACTIVATION_ROLES = ("activation", "recurrent_activation", "hidden_activation")

#: Operations of a step graph and their argument kinds.
OPS = ("input", "state", "product", "bias", "scalar", "one", "add", "sub", "mul", "act",
       "rescale", "sat16", "vector")


def sigmoid(x) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


@dataclasses.dataclass(frozen=True)
class ActivationInfo:
    """What the converters know of one activation.

    Attributes:
        name: its name (:data:`keras_rnnedge.cells.ACTIVATIONS`, or Keras').
        fn: the exact function in NumPy (float64): the calibration pass and the float oracle.
        range: ``(lo, hi)`` of its values (``-inf``/``inf``: unbounded), for the formats and the
            interval arithmetic of the generated C.
        c_float: the float C expression, ``{}`` standing for the argument.
    """

    name: str
    fn: Callable
    range: tuple[float, float]
    c_float: str


#: The activations with an integer implementation (the ``softmax`` of a last Dense layer is
#: omitted: the scores are the logits).
ACTIVATION_TABLE: dict[str, ActivationInfo] = {a.name: a for a in (
    ActivationInfo("tanh", np.tanh, (-1.0, 1.0), "tanhf({})"),
    ActivationInfo("quantized_tanh", lambda x: np.clip(x, -1.0, 1.0), (-1.0, 1.0),
                   "rf_clip({}, -1.0f, 1.0f)"),
    ActivationInfo("sigmoid", sigmoid, (0.0, 1.0), "rf_sigmoid({})"),
    ActivationInfo("quantized_sigmoid", lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0),
                   (0.0, 1.0), "rf_qsigmoid({})"),
    ActivationInfo("hard_sigmoid", lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0), (0.0, 1.0),
                   "rf_hsigmoid({})"),
    ActivationInfo("relu", lambda x: np.maximum(x, 0.0), (0.0, np.inf), "rf_relu({})"),
    ActivationInfo("linear", lambda x: x, (-np.inf, np.inf), "{}"),
    ActivationInfo("softmax", lambda x: x, (-np.inf, np.inf), "{}"),
)}
#: Activations bounded in [0, 1] and in [-1, 1] (the gates and candidates of LSTM/GRU).
GATE_ACTIVATIONS = tuple(k for k, a in ACTIVATION_TABLE.items() if a.range == (0.0, 1.0))
BOUNDED_ACTIVATIONS = tuple(k for k, a in ACTIVATION_TABLE.items()
                            if a.range in ((0.0, 1.0), (-1.0, 1.0)))


@dataclasses.dataclass(frozen=True)
class StateVector:
    """One named vector of a cell's recurrent state.

    Attributes:
        name: ``"h"`` (the first vector is always the layer's output) or another name.
        size: number of values.
        calibrated: its values may exceed 1 in magnitude: the integer format is chosen from
            the float forward pass on the calibration data (else it is ``Q``).
        max_frac: upper bound of that calibrated format's fractional bits (``None``: ``Q``).
        doc: what it holds, for the generated C's comments.
        per_unit: one value per unit of the cell (``units`` values): a flexible cell
            (``levels=``) zeroes the values of its inactive units; ``False`` for a vector of
            another axis (an LSTMP's projected ``h``).
    """

    name: str
    size: int
    calibrated: bool = False
    max_frac: int | None = None
    doc: str = ""
    per_unit: bool = True


@dataclasses.dataclass(frozen=True, eq=False)
class Node:
    """One operation of a step graph (see the module docstring); ``args`` are nodes."""

    op: str
    args: tuple = ()
    key: str | None = None      # matrix / state / bias / scalar / activation role
    gate: int = 0
    like: str | None = None     # a state vector whose format the result takes
    clip: bool = False
    calibrated: bool = False    # a vector node with its own calibrated format (keyed by name)
    name: str | None = None     # a readable name for generated code
    width: int | None = 0       # values per vector (0: a scalar; None: the input, read whole)
    index: int = -1             # position in the graph
    per_unit: bool = False      # one value per unit of the cell (see StateVector.per_unit)

    def __repr__(self) -> str:
        return f"Node({self.index}: {self.op} {self.key or ''})"


@dataclasses.dataclass(frozen=True)
class StepGraph:
    """The equations of one cell instance: ``nodes`` in evaluation order, and ``outputs``
    (state vector name → node), one per vector of ``state``."""

    nodes: tuple[Node, ...]
    outputs: dict[str, Node]
    state: tuple[StateVector, ...]
    units: int

    def users(self) -> dict[int, list[Node]]:
        """Node index → the nodes that read it."""
        out: dict[int, list[Node]] = {n.index: [] for n in self.nodes}
        for n in self.nodes:
            for a in n.args:
                out[a.index].append(n)
        return out

    def products(self) -> list[Node]:
        return [n for n in self.nodes if n.op == "product"]

    def unit_vectors(self) -> list[Node]:
        """The ``vector`` nodes with one value per unit: a flexible cell zeroes their inactive
        units (an LSTMP's ``m``), like those of its per-unit state vectors."""
        return [n for n in self.nodes if n.op == "vector" and n.per_unit]

    def calibrated_vectors(self) -> list[Node]:
        """The ``vector`` nodes with a calibrated format of their own (keyed by name)."""
        return [n for n in self.nodes if n.op == "vector" and n.calibrated]


class StepBuilder:
    """Records the operations of :meth:`CellStep.equations` (see the module docstring)."""

    def __init__(self, state: tuple[StateVector, ...], matrices: dict[str, int], units: int,
                 widths: dict[str, int] | None = None):
        self._nodes: list[Node] = []
        self._widths = {m: int((widths or {}).get(m, units)) for m in matrices}
        self._unit_matrices = {m for m in matrices if m not in (widths or {})}
        self._state = {s.name: s for s in state}
        self._matrices = matrices
        self._units = units
        self._leaves: dict[tuple, Node] = {}

    def _add(self, op: str, *args: Node, **attrs) -> Node:
        for a in args:
            if not isinstance(a, Node):
                raise TypeError(f"Expected step graph nodes as the arguments of {op!r}, but got "
                                f"{type(a).__name__}.")
        like = attrs.get("like")
        if like is not None and like not in self._state:
            raise ValueError(f"Expected like to name a state vector ({', '.join(self._state)}), "
                             f"but got {like!r}.")
        if "width" not in attrs:
            widths = {a.width for a in args if a.width != 0}
            if None in widths:
                raise ValueError(f"{op!r} reads the layer input element by element; only a "
                                 "matrix product can read the input.")
            if len(widths) > 1:
                raise ValueError(f"{op!r} combines vectors of {sorted(widths)} values; "
                                 "element-wise operations need one width.")
            attrs["width"] = widths.pop() if widths else 0
        if "per_unit" not in attrs:
            attrs["per_unit"] = any(a.per_unit for a in args)
        node = Node(op, tuple(args), index=len(self._nodes), **attrs)
        self._nodes.append(node)
        return node

    def _leaf(self, op: str, **attrs) -> Node:
        key = (op, tuple(sorted(attrs.items())))
        if key not in self._leaves:
            self._leaves[key] = self._add(op, **attrs)
        return self._leaves[key]

    def input(self) -> Node:
        return self._leaf("input", width=None)

    def state(self, name: str) -> Node:
        if name not in self._state:
            raise ValueError(f"Expected a state vector name ({', '.join(self._state)}), but got "
                             f"{name!r}.")
        return self._leaf("state", key=name, width=self._state[name].size,
                          per_unit=self._state[name].per_unit)

    def product(self, matrix: str, v: Node, gate: int = 0) -> Node:
        if matrix not in self._matrices:
            raise ValueError(f"Expected a matrix name ({', '.join(self._matrices)}), but got "
                             f"{matrix!r}.")
        if not 0 <= gate < self._matrices[matrix]:
            raise ValueError(f"Matrix {matrix!r} has {self._matrices[matrix]} gates, but gate "
                             f"{gate} was read.")
        return self._add("product", v, key=matrix, gate=gate, width=self._widths[matrix],
                         per_unit=matrix in self._unit_matrices)

    def bias(self, name: str, gate: int = 0, width: int | None = None) -> Node:
        """Slice ``gate`` (of ``width`` values, ``units`` by default) of bias ``name``."""
        return self._leaf("bias", key=name, gate=gate,
                          width=self._units if width is None else int(width),
                          per_unit=width is None)

    def scalar(self, name: str, like: str | None = None) -> Node:
        return self._leaf("scalar", key=name, like=like)

    def one(self) -> Node:
        return self._leaf("one")

    def add(self, a: Node, b: Node, name: str | None = None) -> Node:
        return self._add("add", a, b, name=name)

    def sub(self, a: Node, b: Node, name: str | None = None) -> Node:
        return self._add("sub", a, b, name=name)

    def mul(self, a: Node, b: Node, like: str | None = None, name: str | None = None) -> Node:
        return self._add("mul", a, b, like=like, name=name)

    def act(self, role: str, v: Node, clip: bool = False, name: str | None = None) -> Node:
        if role not in ACTIVATION_ROLES:
            raise ValueError(f"Expected an activation role ({', '.join(ACTIVATION_ROLES)}), "
                             f"but got {role!r}.")
        return self._add("act", v, key=role, clip=clip, name=name)

    def rescale(self, v: Node, like: str | None = None) -> Node:
        return self._add("rescale", v, like=like)

    def sat16(self, v: Node, name: str | None = None) -> Node:
        return self._add("sat16", v, name=name)

    def vector(self, v: Node, name: str | None = None, calibrated: bool = False) -> Node:
        if calibrated:
            taken = {n.name for n in self._nodes if n.calibrated}
            if not name or name in self._state or name in taken:
                raise ValueError(f"A calibrated vector needs a name of its own (its format is "
                                 f"keyed by it), not a state vector's or another calibrated "
                                 f"vector's ({', '.join(sorted(taken | set(self._state)))}); "
                                 f"got {name!r}.")
        return self._add("vector", v, name=name, calibrated=bool(calibrated))

    def graph(self, outputs: dict[str, Node]) -> StepGraph:
        missing = set(self._state) ^ set(outputs)
        if missing:
            raise ValueError(f"The equations must give a new value of every state vector "
                             f"({', '.join(self._state)}), but the outputs are "
                             f"{', '.join(outputs) or 'none'}.")
        for name, node in outputs.items():
            if node.width not in (0, self._state[name].size):
                raise ValueError(f"The new value of state vector {name!r} has {node.width} "
                                 f"values, but the vector holds {self._state[name].size}.")
        return StepGraph(nodes=tuple(self._nodes), outputs=dict(outputs),
                         state=tuple(self._state.values()), units=self._units)


class CellStep:
    """The declaration of a cell kind's step (subclass it; see the module docstring).

    Attributes:
        name: the kind's name in reports and generated code (``"lstm"``...).
        gates: matrix name → number of gate blocks of outputs it has (each ``units`` wide unless
            :meth:`widths` says otherwise).
        activations: role → the activation names allowed there (those with an integer
            implementation that keep the step's formats valid); a role absent here is unused.
    """

    name: str = ""
    gates: dict[str, int] = {}
    activations: dict[str, tuple[str, ...]] = {}

    def state(self, cell) -> tuple[StateVector, ...]:
        return (StateVector("h", int(cell.units)),)

    def matrices(self, cell) -> dict[str, int]:
        """The matrices of ``cell`` and their gate blocks: :attr:`gates`, unless an instance
        has fewer (an H-LSTM without hidden layers has no ``gate_kernel``)."""
        return dict(self.gates)

    def widths(self, cell) -> dict[str, int]:
        """Matrix name → the width of its gate blocks, where it is not ``units`` (a projection
        to ``projection_units``, a hidden layer of a gate)."""
        return {}

    def biases(self, cell, weights: dict[str, np.ndarray]) -> dict[str, tuple[np.ndarray, bool]]:
        """Bias name → ``(values, added to the input product)``: the second item says whether
        a constant added to the layer input changes this bias (the input offset is folded into
        every bias added to ``x @ W``)."""
        return {}

    def scalars(self, cell, weights: dict[str, np.ndarray]) -> dict[str, float]:
        """Scalar name → its float value (after any transform the cell applies)."""
        return {}

    def equations(self, b: StepBuilder, cell) -> dict[str, Node]:
        raise NotImplementedError

    def graph(self, cell) -> StepGraph:
        """The equations of ``cell`` (a built cell of this kind) as a :class:`StepGraph`."""
        state = self.state(cell)
        if not state or state[0].name != "h":
            raise ValueError(f"{type(self).__name__}.state must start with the output vector "
                             f"'h', but got {[s.name for s in state]}.")
        b = StepBuilder(state, self.matrices(cell), int(cell.units), self.widths(cell))
        return b.graph(self.equations(b, cell))


#: Cell class → its step declaration (looked up through the class hierarchy by :func:`step_of`).
STEPS: dict[type, CellStep] = {}


def register_step(cell_class: type, step: CellStep) -> CellStep:
    """Declare ``step`` as the step of ``cell_class`` and its subclasses."""
    if not isinstance(step, CellStep):
        raise TypeError(f"Expected a CellStep, but got {type(step).__name__}.")
    STEPS[cell_class] = step
    return step


def step_of(cell: Any) -> CellStep | None:
    """The step declaration of ``cell``, through its class hierarchy (a subclass of a
    registered cell runs its base's step unless it registers its own); ``None`` if none."""
    for klass in type(cell).__mro__:
        if klass in STEPS:
            return STEPS[klass]
    return None


def scalar_weight(weights: dict[str, np.ndarray], name: str,
                  transform: Callable = sigmoid) -> float:
    return float(transform(np.asarray(weights[name], np.float64).ravel()[0]))


# -- the declarations of the cell kinds -------------------------------------------------------
# FastGRNN/FastRNN activations (``activation`` also ``relu``: clipped at 1 in integers).
FAST_ACTIVATIONS = BOUNDED_ACTIVATIONS


def _bias(weights: dict[str, np.ndarray], name: str, width: int) -> np.ndarray:
    return (np.asarray(weights[name], np.float64).copy() if name in weights
            else np.zeros(width))


class FastGRNNStep(CellStep):
    r"""``a = x W + h U``, ``z = σ(a + b_z)``, ``c = φ(a + b_h)``,
    ``h' = σ(ζ)(1 - z) c + σ(ν) c + z h`` (FastGRNN; ``|h|`` may exceed 1: its format is
    calibrated, and ``ζ``, ``ν`` are stored in it)."""

    name = "fastgrnn"
    gates = {"kernel": 1, "recurrent_kernel": 1}
    activations = {"activation": FAST_ACTIVATIONS + ("relu",),
                   "recurrent_activation": FAST_ACTIVATIONS}

    def state(self, cell):
        return (StateVector("h", int(cell.units), calibrated=True,
                            doc="FastGRNN state (|h| may exceed 1)"),)

    def biases(self, cell, weights):
        n = int(cell.units)
        return {k: (_bias(weights, k, n), True) for k in ("gate_bias", "update_bias")}

    def scalars(self, cell, weights):
        return {k: scalar_weight(weights, k) for k in ("zeta", "nu")}

    def equations(self, b, cell):
        h = b.state("h")
        a = b.add(b.product("kernel", b.input()), b.product("recurrent_kernel", h), name="a")
        z = b.act("recurrent_activation", b.add(a, b.bias("gate_bias")), name="z")
        c = b.act("activation", b.add(a, b.bias("update_bias")), clip=True, name="c")
        k = b.mul(b.scalar("zeta", like="h"), b.sub(b.one(), z), name="k")
        t = b.add(b.mul(k, c), b.mul(b.scalar("nu", like="h"), c), name="t")
        return {"h": b.add(t, b.mul(z, h))}


class FastRNNStep(CellStep):
    r"""``c = φ(x W + h U + b)``, ``h' = σ(α) c + σ(β) h`` (FastRNN; calibrated ``h``)."""

    name = "fastrnn"
    gates = {"kernel": 1, "recurrent_kernel": 1}
    activations = {"activation": FAST_ACTIVATIONS + ("relu",)}

    def state(self, cell):
        return (StateVector("h", int(cell.units), calibrated=True,
                            doc="FastRNN state (|h| may exceed 1)"),)

    def biases(self, cell, weights):
        return {"bias": (_bias(weights, "bias", int(cell.units)), True)}

    def scalars(self, cell, weights):
        return {k: scalar_weight(weights, k) for k in ("alpha", "beta")}

    def equations(self, b, cell):
        h = b.state("h")
        pre = b.add(b.add(b.product("kernel", b.input()), b.product("recurrent_kernel", h)),
                    b.bias("bias"))
        c = b.act("activation", pre, clip=True, name="c")
        return {"h": b.add(b.mul(b.scalar("alpha", like="h"), c),
                           b.mul(b.scalar("beta"), h))}


class SimpleRNNStep(CellStep):
    """``h' = φ(x W + h U + b)`` (an unbounded ``φ``, ReLU, gets a calibrated format)."""

    name = "simplernn"
    gates = {"kernel": 1, "recurrent_kernel": 1}
    activations = {"activation": BOUNDED_ACTIVATIONS + ("relu",)}

    def state(self, cell):
        from keras_rnnedge.cells.base import activation_name

        try:
            bounded = activation_name(cell.activation) in BOUNDED_ACTIVATIONS
        except ValueError:
            bounded = False
        return (StateVector("h", int(cell.units), calibrated=not bounded),)

    def biases(self, cell, weights):
        return {"bias": (_bias(weights, "bias", int(cell.units)), True)}

    def equations(self, b, cell):
        h = b.state("h")
        pre = b.add(b.add(b.product("kernel", b.input()), b.product("recurrent_kernel", h)),
                    b.bias("bias"))
        return {"h": b.act("activation", pre, name="c")}


#: Fractional bits of an LSTM cell state ``c`` at most (headroom: ``|c|`` may exceed 1).
LSTM_CELL_FRAC = 12


class LSTMStep(CellStep):
    """Gates ``i, f, g, o`` (Keras order) of ``x W + h U + b``;
    ``c' = σ(f) c + σ(i) φ(g)``, ``h' = σ(o) φ(c')``. The cell state ``c`` has a calibrated
    format of at most :data:`LSTM_CELL_FRAC` fractional bits."""

    name = "lstm"
    gates = {"kernel": 4, "recurrent_kernel": 4}
    activations = {"activation": BOUNDED_ACTIVATIONS, "recurrent_activation": GATE_ACTIVATIONS}

    def state(self, cell):
        n = int(cell.units)
        return (StateVector("h", n), StateVector("c", n, calibrated=True,
                                                 max_frac=LSTM_CELL_FRAC, doc="LSTM cell state"))

    def biases(self, cell, weights):
        return {"bias": (_bias(weights, "bias", 4 * int(cell.units)), True)}

    def equations(self, b, cell):
        x, h = b.input(), b.state("h")

        def gate(g: int, role: str, name: str):
            pre = b.add(b.add(b.product("kernel", x, g), b.product("recurrent_kernel", h, g)),
                        b.bias("bias", g))
            return b.act(role, pre, name=name)

        i = gate(0, "recurrent_activation", "ig")
        f = gate(1, "recurrent_activation", "fg")
        g = gate(2, "activation", "g")
        o = gate(3, "recurrent_activation", "og")
        c = b.sat16(b.add(b.mul(f, b.state("c"), like="c"), b.mul(i, g, like="c")), name="c")
        return {"c": c, "h": b.mul(o, b.rescale(b.act("activation", c)))}


class GRUStep(CellStep):
    """Gates ``z, r, h`` (Keras order). ``reset_after=True``: ``h̃ = φ(x_h + b_h + r (h U_h +
    b'_h))``; ``reset_after=False``: ``h̃ = φ(x_h + b_h + (r h) U_h)``;
    ``h' = z h + (1 - z) h̃``."""

    name = "gru"
    gates = {"kernel": 3, "recurrent_kernel": 3}
    activations = {"activation": BOUNDED_ACTIVATIONS, "recurrent_activation": GATE_ACTIVATIONS}

    @staticmethod
    def _reset_after(cell) -> bool:
        return bool(getattr(cell, "reset_after", False))

    def biases(self, cell, weights):
        width = 3 * int(cell.units)
        if self._reset_after(cell):
            bias = weights["bias"] if "bias" in weights else np.zeros((2, width))
            return {"input_bias": (np.asarray(bias[0], np.float64).copy(), True),
                    "recurrent_bias": (np.asarray(bias[1], np.float64).copy(), False)}
        return {"bias": (_bias(weights, "bias", width), True)}

    def equations(self, b, cell):
        x, h = b.input(), b.state("h")
        sig = "recurrent_activation"
        if self._reset_after(cell):
            def xs(g):
                return b.add(b.product("kernel", x, g), b.bias("input_bias", g))

            def us(g):
                return b.add(b.product("recurrent_kernel", h, g), b.bias("recurrent_bias", g))

            z = b.act(sig, b.add(xs(0), us(0)), name="z")
            r = b.act(sig, b.add(xs(1), us(1)), name="r")
            c = b.act("activation", b.add(xs(2), b.mul(r, us(2))), name="c")
        else:
            def pre(g, u):
                return b.add(b.add(b.product("kernel", x, g), b.bias("bias", g)), u)

            r = b.act(sig, pre(1, b.product("recurrent_kernel", h, 1)), name="r")
            z = b.act(sig, pre(0, b.product("recurrent_kernel", h, 0)), name="z")
            rh = b.vector(b.mul(r, h), name="rh")
            c = b.act("activation", pre(2, b.product("recurrent_kernel", rh, 2)), name="c")
        return {"h": b.add(b.mul(z, h), b.mul(b.sub(b.one(), z), c))}


def _register_stock() -> None:
    from keras_rnnedge._compat import keras

    register_step(keras.layers.LSTMCell, LSTMStep())
    register_step(keras.layers.GRUCell, GRUStep())
    register_step(keras.layers.SimpleRNNCell, SimpleRNNStep())


_register_stock()


class ProjectionLSTMStep(LSTMStep):
    """LSTMP (Sak et al. 2014): the LSTM's gates read the projected ``h`` (``projection_units``
    values); ``m = σ(o) φ(c')`` (``units`` values) then ``h' = m P``. ``h`` and ``c`` have
    different sizes; ``h`` is calibrated (a projection of values in ``[-1, 1]`` may exceed 1)."""

    name = "lstmp"
    gates = {"kernel": 4, "recurrent_kernel": 4, "projection": 1}

    def widths(self, cell):
        return {"projection": int(cell.projection_units)}

    def state(self, cell):
        n, p = int(cell.units), int(cell.projection_units)
        return (StateVector("h", p, calibrated=True, doc="projected output", per_unit=False),
                StateVector("c", n, calibrated=True, max_frac=LSTM_CELL_FRAC,
                            doc="LSTM cell state"))

    def equations(self, b, cell):
        new = super().equations(b, cell)
        m = b.vector(new["h"], name="m")  # sigma(o) phi(c'), in [-1, 1]
        return {"h": b.product("projection", m), "c": new["c"]}
