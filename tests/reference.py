"""Independent NumPy (float64) oracles of every registered cell.

Written from the papers' equations, not from the Keras code: each function takes the cell's
weights by their stable names and a batch of sequences, and returns every hidden state.
"""

from __future__ import annotations

import numpy as np

from keras_rnnedge.matrices.hashed import hash_bucket_sign  # the one definition of the hash

#: the constructor argument holding each matrix's structure
STRUCTURE_ARGUMENT = {"kernel": "kernel_structure", "recurrent_kernel": "recurrent_structure",
                      "projection": "projection_structure", "gate_kernel": "gate_structure"}


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "hard_sigmoid": lambda x: np.clip(0.2 * x + 0.5, 0.0, 1.0),
    "linear": lambda x: x,
    "quantized_sigmoid": lambda x: np.clip((x + 1.0) / 2.0, 0.0, 1.0),
    "quantized_tanh": lambda x: np.clip(x, -1.0, 1.0),
}


def _spec(config, name) -> dict:
    spec = config.get(STRUCTURE_ARGUMENT[name]) or {}
    return {"family": spec} if isinstance(spec, str) else dict(spec)


def _contract_cores(cores, ring: bool):
    """The matrix of TT cores ``(r_{k-1}, m_k, n_k, r_k)`` by one einsum over every rank index
    (``ring``: the last rank index is the first one, which takes the trace)."""
    letters = "abcdefghijklmnopqrstuvwxyz"
    ranks = letters[:len(cores)] + letters[0] if ring else letters[:len(cores) + 1]
    rows, cols, terms = [], [], []
    for k in range(len(cores)):
        i, j = letters[10 + 2 * k].upper(), letters[11 + 2 * k].upper()
        terms.append(ranks[k] + i + j + ranks[k + 1])
        rows.append(i)
        cols.append(j)
    full = np.einsum(",".join(terms) + "->" + "".join(rows + cols), *cores)
    return full.reshape(int(np.prod([c.shape[1] for c in cores])), -1)


def _matrix(w, name, config=None, rows=None, cols=None):
    """The ``rows × cols`` matrix ``name`` from its stored weights, computed here from the
    definitions of the families: full, low rank ``U V``, Kronecker ``A_1 ⊗ A_2 ⊗ ...``,
    TT-matrix cores, block-circulant ``W[pk+a, qk+b] = c_pq[(a-b) mod k]``, Toeplitz
    ``W[i, j] = t[i-j+cols-1]``, hashed ``W[i, j] = ξ(i,j) w[h(i,j)]``."""
    if name in w:
        return w[name]
    ring = [w[f"{name}_ring_{k}"] for k in range(len(w)) if f"{name}_ring_{k}" in w]
    if ring:  # W[(i_1..i_d), (j_1..j_d)] = trace(G_1[., i_1, j_1, .] ... G_d[., i_d, j_d, .])
        return _contract_cores(ring, ring=True)
    if name + "_groups" in w:  # block-diagonal over the groups, outputs shuffled across them
        blocks = w[name + "_groups"]
        g, m, n = blocks.shape
        plain = np.zeros((g * m, g * n))
        for k in range(g):
            plain[k * m:(k + 1) * m, k * n:(k + 1) * n] = blocks[k]
        shuffle = _spec(config, name).get("shuffle", True)
        return plain.reshape(g * m, g, n).transpose(0, 2, 1).reshape(g * m, -1) if shuffle \
            else plain
    if name + "_blocks" in w:  # (Q, P, k): block (p, q) is circulant
        c = w[name + "_blocks"]
        k = c.shape[2]
        full = np.zeros((c.shape[1] * k, c.shape[0] * k))
        for q in range(c.shape[0]):
            for p in range(c.shape[1]):
                for a in range(k):
                    for b in range(k):
                        full[p * k + a, q * k + b] = c[q, p, (a - b) % k]
        return full[:rows, :cols]
    if name + "_diagonals" in w:
        t = w[name + "_diagonals"]
        return np.array([[t[i - j + cols - 1] for j in range(cols)] for i in range(rows)])
    if name + "_buckets" in w:
        shared = w[name + "_buckets"]
        bucket, sign = hash_bucket_sign(rows, cols, shared.size, _spec(config, name).get("seed", 0))
        return sign * shared[bucket]
    if name + "_u" in w:
        return w[name + "_u"] @ w[name + "_v"]
    factors = [w[k] for k in sorted(w) if k.startswith(name + "_factor_")]
    if factors:
        out = factors[0]
        for f in factors[1:]:
            out = np.kron(out, f)
        return out
    cores = [w[f"{name}_core_{k}"] for k in range(len(w)) if f"{name}_core_{k}" in w]
    if cores:  # W[(i_1..i_d), (j_1..j_d)] = sum over ranks of G_1[., i_1, j_1, .] ... G_d[...]
        return _contract_cores(cores, ring=False)
    raise KeyError(f"no weights for matrix {name!r} in {sorted(w)}")


def _pair(w, config, x, gates, units=None):
    n = units or config["units"]
    return (_matrix(w, "kernel", config, x.shape[-1], gates * config["units"]),
            _matrix(w, "recurrent_kernel", config, n, gates * config["units"]))


def fastrnn(w, config, x):
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    W, U = _pair(w, config, x, 1)
    h = np.zeros((x.shape[0], U.shape[0]))
    out = []
    for t in range(x.shape[1]):
        cand = phi(x[:, t] @ W + h @ U + w["bias"])
        h = sigmoid(w["alpha"][0]) * cand + sigmoid(w["beta"][0]) * h
        out.append(h)
    return np.stack(out, 1)


def fastgrnn(w, config, x):
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    gate = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
    W, U = _pair(w, config, x, 1)
    h = np.zeros((x.shape[0], U.shape[0]))
    zeta, nu = sigmoid(w["zeta"][0]), sigmoid(w["nu"][0])
    out = []
    for t in range(x.shape[1]):
        a = x[:, t] @ W + h @ U
        z = gate(a + w["gate_bias"])
        cand = phi(a + w["update_bias"])
        h = (zeta * (1.0 - z) + nu) * cand + z * h
        out.append(h)
    return np.stack(out, 1)


def lstm(w, config, x):
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    gate = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
    W, U = _pair(w, config, x, 4)
    n = U.shape[0]
    b = w.get("bias", np.zeros(4 * n))
    h = np.zeros((x.shape[0], n))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ U + b
        i, f, g, o = (z[:, k * n:(k + 1) * n] for k in range(4))
        c = gate(f) * c + gate(i) * phi(g)
        h = gate(o) * phi(c)
        out.append(h)
    return np.stack(out, 1)


def lstmp(w, config, x):
    """LSTM with a recurrent projection: ``m = σ(o) φ(c)``, ``h = m P`` (Sak et al. 2014)."""
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    gate = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
    W, U = _pair(w, config, x, 4, units=config["projection_units"])
    P = _matrix(w, "projection", config, config["units"], config["projection_units"])
    n, p = P.shape
    b = w.get("bias", np.zeros(4 * n))
    h = np.zeros((x.shape[0], p))
    c = np.zeros((x.shape[0], n))
    out = []
    for t in range(x.shape[1]):
        z = x[:, t] @ W + h @ U + b
        i, f, g, o = (z[:, k * n:(k + 1) * n] for k in range(4))
        c = gate(f) * c + gate(i) * phi(g)
        h = (gate(o) * phi(c)) @ P
        out.append(h)
    return np.stack(out, 1)


def hlstm(w, config, x):
    """H-LSTM (Dai, Yin, Jha 2020): each gate ``k`` is ``ψ(x W_k + h U_k + b_k) V_k + d_k``
    (one hidden layer), then the LSTM; without ``hidden_units`` it is the LSTM."""
    if config.get("hidden_units") is None:
        return lstm(w, config, x)
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    gate = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
    psi = ACTIVATIONS[config.get("hidden_activation", "relu")]
    n, m = config["units"], config["hidden_units"]
    W = _matrix(w, "kernel", config, x.shape[-1], 4 * m)
    U = _matrix(w, "recurrent_kernel", config, n, 4 * m)
    V = _matrix(w, "gate_kernel", config, m, 4 * n)
    b = w.get("hidden_bias", np.zeros(4 * m))
    d = w.get("bias", np.zeros(4 * n))
    h = np.zeros((x.shape[0], n))
    c = np.zeros_like(h)
    out = []
    for t in range(x.shape[1]):
        hidden = psi(x[:, t] @ W + h @ U + b)
        i, f, g, o = (hidden[:, k * m:(k + 1) * m] @ V[:, k * n:(k + 1) * n] + d[k * n:(k + 1) * n]
                      for k in range(4))
        c = gate(f) * c + gate(i) * phi(g)
        h = gate(o) * phi(c)
        out.append(h)
    return np.stack(out, 1)


def gru(w, config, x):
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    gate = ACTIVATIONS[config.get("recurrent_activation", "sigmoid")]
    reset_after = config.get("reset_after", True)
    W, U = _pair(w, config, x, 3)
    n = U.shape[0]
    if "bias" in w:
        b_in, b_rec = (w["bias"][0], w["bias"][1]) if reset_after else (w["bias"], 0.0)
    else:
        b_in, b_rec = 0.0, 0.0
    h = np.zeros((x.shape[0], n))
    out = []
    for t in range(x.shape[1]):
        xs = x[:, t] @ W + b_in
        x_z, x_r, x_h = xs[:, :n], xs[:, n:2 * n], xs[:, 2 * n:]
        if reset_after:
            us = h @ U + b_rec
            z = gate(x_z + us[:, :n])
            r = gate(x_r + us[:, n:2 * n])
            cand = phi(x_h + r * us[:, 2 * n:])
        else:
            z = gate(x_z + h @ U[:, :n])
            r = gate(x_r + h @ U[:, n:2 * n])
            cand = phi(x_h + (r * h) @ U[:, 2 * n:])
        h = z * h + (1.0 - z) * cand
        out.append(h)
    return np.stack(out, 1)


def simplernn(w, config, x):
    """Elman: ``h = φ(x W + h U + b)``."""
    phi = ACTIVATIONS[config.get("activation", "tanh")]
    W, U = _pair(w, config, x, 1)
    b = w.get("bias", 0.0)
    h = np.zeros((x.shape[0], U.shape[0]))
    out = []
    for t in range(x.shape[1]):
        h = phi(x[:, t] @ W + h @ U + b)
        out.append(h)
    return np.stack(out, 1)


ORACLES = {
    "FastRNNCell": fastrnn,
    "FastGRNNCell": fastgrnn,
    "LowRankLSTMCell": lstm,
    "HLSTMCell": hlstm,
    "LowRankGRUCell": gru,
    "ProjectionLSTMCell": lstmp,
    "LowRankSimpleRNNCell": simplernn,
}
