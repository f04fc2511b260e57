"""How a declared cell step (:class:`~keras_rnnedge.cells.step.StepGraph`) becomes loops of C.

Both C generators (integer and float) emit a layer's step as loops over the units ``i``: each
loop computes, per unit, the element-wise operations of every gate from the rows of the matrix
products. A ``vector`` node (a whole vector that a later product reads, GRU's ``r * h``) ends a
loop: the product reading it runs after the loop that filled it. :func:`schedule` assigns every
node its loop (its *phase*) and says what each phase needs: the products to prepare before it
(an intermediate vector of a structured matrix, or the whole product in float), the values
kept across loops, and whether the new state can be written in place.
"""

from __future__ import annotations

import dataclasses

from keras_rnnedge.cells.step import Node, StepGraph

__all__ = ["Schedule", "schedule"]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """The loops of one step.

    Attributes:
        phases: number of loops.
        phase: node index → its loop.
        used: indices of the nodes that the new state depends on.
        sources: per phase, the ``(matrix, source node)`` products whose rows it reads, in
            order of first use (what to prepare before that loop).
        kept: indices of the values computed in one loop and read in a later one (stored in a
            vector of the loop's width).
        widths: per phase, the number of units its loop runs over.
        writes: per phase, the state vectors whose new value it writes (at the end of unit
            ``i``): the loop that computes the value, unless a later loop still reads the old
            vector (then the last loop, the value kept until then).
        inplace: state vector name → whether its new value can be written over the old one at
            the end of unit ``i`` (no product of the loop that writes it reads that vector
            directly).
    """

    phases: int
    phase: dict[int, int]
    used: frozenset[int]
    sources: tuple[tuple[tuple[str, Node], ...], ...]
    kept: frozenset[int]
    widths: tuple[int, ...]
    writes: tuple[tuple[str, ...], ...]
    inplace: dict[str, bool]

    def nodes(self, graph: StepGraph, phase: int) -> list[Node]:
        """The used element-wise nodes of ``phase`` in evaluation order (products and leaves
        are read where they are used)."""
        return [n for n in graph.nodes if n.index in self.used and self.phase[n.index] == phase
                and n.op not in _LEAVES and n.op != "product"]


#: Nodes read where they are used (no loop of their own).
_LEAVES = ("input", "state", "bias", "scalar", "one")


def schedule(graph: StepGraph, reads_directly=lambda matrix, source: True) -> Schedule:
    """The loops of ``graph``.

    Args:
        graph: the step.
        reads_directly: ``(matrix name, source node) -> bool``: whether the rows of that product
            read the source vector itself inside the loop (a dense matrix), rather than an
            intermediate prepared before the loop; decides where the new state can be written
            in place.
    """
    used: set[int] = set()
    todo = list(graph.outputs.values())
    while todo:
        node = todo.pop()
        if node.index not in used:
            used.add(node.index)
            todo.extend(node.args)
    phase: dict[int, int] = {}
    for node in graph.nodes:
        if node.op in _LEAVES:
            phase[node.index] = 0
        elif node.op == "product":
            src = node.args[0]
            phase[node.index] = phase[src.index] + (1 if src.op == "vector" else 0)
        else:
            phase[node.index] = max((phase[a.index] for a in node.args), default=0)
    phases = 1 + max(phase[n.index] for n in graph.nodes if n.index in used)
    sources: list[list[tuple[str, Node]]] = [[] for _ in range(phases)]
    kept: set[int] = set()
    for node in graph.nodes:
        if node.index not in used:
            continue
        if node.op == "product":
            pair = (node.key, node.args[0])
            if not any(p == pair[0] and s is pair[1] for p, s in sources[phase[node.index]]):
                sources[phase[node.index]].append(pair)
        for a in node.args:
            if (a.op not in _LEAVES and a.op not in ("product", "vector")
                    and phase[a.index] < phase[node.index]):
                kept.add(a.index)
    last = phases - 1
    read_in: dict[str, set[int]] = {}  # state vector -> the loops that read its old value
    for node in graph.nodes:
        if node.index in used:
            for a in node.args:
                if a.op == "state":
                    read_in.setdefault(a.key, set()).add(phase[node.index])
    writes: list[list[str]] = [[] for _ in range(phases)]
    for vector in graph.state:
        out = graph.outputs[vector.name]
        at = 0 if out.op in _LEAVES else phase[out.index]
        if any(p > at for p in read_in.get(vector.name, ())):
            at = last
        if out.op not in _LEAVES and phase[out.index] < at:
            kept.add(out.index)
        writes[at].append(vector.name)
    widths = []
    for p in range(phases):
        found = {n.width for n in graph.nodes if n.index in used and phase[n.index] == p
                 and n.op not in _LEAVES and n.op != "product" and n.width}
        found |= {graph.outputs[name].width or size for name, size in
                  ((v.name, v.size) for v in graph.state) if name in writes[p]}
        if len(found) != 1:
            raise ValueError(f"Loop {p} of the step computes vectors of {sorted(found)} values; "
                             "values of another width must go through a vector node and a "
                             "matrix product.")
        widths.append(found.pop())
    inplace = {}
    for p in range(phases):
        for name in writes[p]:
            inplace[name] = not any(
                src.op == "state" and src.key == name and reads_directly(matrix, src)
                for matrix, src in sources[p])
    return Schedule(phases=phases, phase=phase, used=frozenset(used),
                    sources=tuple(tuple(s) for s in sources), kept=frozenset(kept),
                    widths=tuple(widths), writes=tuple(tuple(w) for w in writes),
                    inplace=inplace)
