"""keras_rnnedge.summary: every figure is computed by hand in the comments next to it."""

from __future__ import annotations

import json

import pytest

from keras_rnnedge._compat import keras, np, tfmot
from keras_rnnedge.cells import FastGRNNCell, LowRankLSTMCell
from keras_rnnedge.summary import csr_bytes, summary

# FastGRNN(units=8, w_rank=None, u_rank=4) on T=10 steps of F=3 features, then Dense(2).
STEPS, FEATURES, UNITS = 10, 3, 8


def fastgrnn_model(name: str = "demo") -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            keras.layers.RNN(FastGRNNCell(UNITS, u_rank=4), name="rnn"),
            keras.layers.Dense(2, name="dense"),
        ],
        name=name,
    )


def sparse_fastgrnn_model() -> keras.Model:
    """The FastGRNN model with hand-set weights: W has 4 non-zeros, the Dense kernel 3."""
    model = fastgrnn_model()
    rnn, dense = model.get_layer("rnn"), model.get_layer("dense")
    kernel = np.zeros((FEATURES, UNITS), "float32")
    kernel[0, 0], kernel[1, 3], kernel[2, 5], kernel[2, 7] = 1.0, -2.0, 0.5, 3.0
    cell = rnn.cell
    cell.kernel.assign(kernel)
    for weight in (
        cell.recurrent_kernel_u,
        cell.recurrent_kernel_v,
        cell.gate_bias,
        cell.update_bias,
        cell.zeta,
        cell.nu,
    ):
        weight.assign(np.full(weight.shape, 0.5, "float32"))
    dense_kernel = np.zeros((UNITS, 2), "float32")
    dense_kernel[0, 0], dense_kernel[4, 1], dense_kernel[7, 0] = 1.0, 2.0, -1.0
    dense.kernel.assign(dense_kernel)
    dense.bias.assign(np.zeros(2, "float32"))
    return model


def test_fastgrnn_figures():
    s = summary(fastgrnn_model())
    rnn, dense = s.layers
    assert [rnn.name, dense.name] == ["rnn", "dense"]
    assert rnn.class_name == "RNN(FastGRNNCell)"
    assert dense.class_name == "Dense"
    # W 3*8 + U_u 8*4 + U_v 4*8 (= 4*(8+8)) + biases 2*8 + zeta, nu = 24 + 64 + 16 + 2
    assert rnn.params == 106
    # kernel 8*2 + bias 2
    assert dense.params == 18
    # Initial values: glorot/orthogonal matrices, biases at 1, zeta 1, nu -4 are non-zero;
    # the Dense bias starts at 0.
    assert rnn.nonzero_params == 106
    assert dense.nonzero_params == 16
    # float32: 4 bytes each; int8: matrices 24 + 32 + 32 at 1 byte, 16 biases + 2 scalars at 4
    assert (rnn.bytes_f32, rnn.bytes_int8) == (424, 88 + 18 * 4)
    assert (dense.bytes_f32, dense.bytes_int8) == (72, 16 + 2 * 4)
    assert rnn.sparse_tensors_f32 == rnn.sparse_tensors_int8 == ()
    # MACs per step = matrix parameters: 3*8 + 4*(8+8) = 88; per inference 10 steps * 88
    assert rnn.recurrent and (rnn.macs_per_step, rnn.macs_per_inference) == (88, 880)
    assert not dense.recurrent and (dense.macs_per_step, dense.macs_per_inference) == (None, 16)
    # state: h, 8 elements: 32 B at float32, 8 B at int8
    assert (rnn.state_elements, rnn.state_bytes_f32, rnn.state_bytes_int8) == (8, 32, 8)
    assert (dense.state_elements, dense.state_bytes_f32) == (0, 0)
    kinds = {t.name.split("/")[-1]: t.kind for t in rnn.tensors}
    assert kinds == {
        "kernel": "matrix",
        "recurrent_kernel_u": "matrix",
        "recurrent_kernel_v": "matrix",
        "gate_bias": "bias",
        "update_bias": "bias",
        "zeta": "bias",
        "nu": "bias",
    }
    t = s.totals
    assert (t.params, t.nonzero_params, t.bytes_f32, t.bytes_int8) == (124, 122, 496, 184)
    assert (t.macs_per_step, t.macs_per_inference) == (88, 896)
    assert (t.peak_state_elements, t.peak_state_bytes_f32, t.peak_state_bytes_int8) == (8, 32, 8)


def test_matches_the_cell_own_statistics():
    model = fastgrnn_model()
    stats = model.get_layer("rnn").cell.compression_stats()
    record = summary(model).layers[0]
    assert (record.params, record.macs_per_step, record.state_elements) == (
        stats.params,
        stats.macs_per_step,
        stats.state_size,
    )


@pytest.mark.parametrize(
    "make_layer, params, macs_per_step, state, int8",
    [
        # 4 gates: 4*5*(3+5) matrices + 4*5 biases; state h and c; int8 160 + 20 biases * 4
        (lambda: keras.layers.LSTM(5), 180, 160, 10, 240),
        # reset_after=True: bias shape (2, 15): 3*5*(3+5) + 2*3*5; int8 120 + 30 * 4
        (lambda: keras.layers.GRU(5), 150, 120, 5, 240),
        # reset_after=False: one bias row: 120 + 15; same MACs ((r*h) U_h is still 5*5)
        (lambda: keras.layers.GRU(5, reset_after=False), 135, 120, 5, 180),
        # 5*(3+5) + 5; int8 40 + 5 * 4
        (lambda: keras.layers.SimpleRNN(5), 45, 40, 5, 60),
        # the stock cell inside keras.layers.RNN gets the same formula
        (lambda: keras.layers.RNN(keras.layers.LSTMCell(5)), 180, 160, 10, 240),
    ],
    ids=["LSTM", "GRU", "GRU-reset-before", "SimpleRNN", "RNN(LSTMCell)"],
)
def test_stock_recurrent_layers(make_layer, params, macs_per_step, state, int8):
    model = keras.Sequential([keras.Input((7, 3)), make_layer()])
    (record,) = summary(model).layers
    assert record.params == params
    assert record.bytes_f32 == 4 * params
    assert record.bytes_int8 == int8
    assert record.macs_per_step == macs_per_step
    assert record.macs_per_inference == 7 * macs_per_step
    assert (record.state_elements, record.state_bytes_f32, record.state_bytes_int8) == (
        state,
        4 * state,
        state,
    )


def test_bidirectional_and_stacked_cells():
    inputs = keras.Input((20, 6))
    x = keras.layers.Bidirectional(keras.layers.LSTM(5, return_sequences=True))(inputs)
    x = keras.layers.RNN([keras.layers.GRUCell(3), LowRankLSTMCell(4, recurrent_rank=2)])(x)
    bi, stacked = summary(keras.Model(inputs, x)).layers
    assert bi.class_name == "Bidirectional(LSTM)"
    # two LSTM(5) on 6 features: 2 * (4*5*(6+5) + 4*5); MACs 2 * 4*5*11; state 2 * (5 + 5)
    assert (bi.params, bi.macs_per_step, bi.state_elements) == (480, 440, 20)
    assert stacked.class_name == "RNN(StackedRNNCells[GRUCell, LowRankLSTMCell])"
    # GRUCell(3) on 10: 3*3*(10+3) + 2*3*3 = 135; LowRankLSTMCell(4, recurrent_rank=2) on 3:
    # W 3*16 + U 2*(4+16) + b 16 = 104. MACs 117 + (48 + 40); state 3 + 2*4
    assert (stacked.params, stacked.macs_per_step, stacked.state_elements) == (239, 205, 11)
    # peak state: both layers' states are live when the model runs step by step
    assert summary(keras.Model(inputs, x)).totals.peak_state_elements == 31


def test_hand_pruned_weights_are_stored_sparse_where_smaller():
    s = summary(sparse_fastgrnn_model())
    rnn, dense = s.layers
    kernel = next(t for t in rnn.tensors if t.name.endswith("/kernel"))
    assert (kernel.params, kernel.nonzero_params) == (24, 4)
    # CSR with R = 8 output rows of C = 3 columns: nnz * (value + uint8 index, as C <= 256)
    # + uint16 row pointers * (R + 1)
    # float32: 4 * (4 + 1) + 2 * 9 = 38 < 24 * 4 = 96 -> sparse
    # int8:    4 * (1 + 1) + 2 * 9 = 26 > 24 * 1 = 24 -> dense
    assert (kernel.bytes_f32, kernel.sparse_f32) == (38, True)
    assert (kernel.bytes_int8, kernel.sparse_int8) == (24, False)
    assert rnn.nonzero_params == 106 - 20
    assert rnn.bytes_f32 == 424 - 96 + 38
    assert rnn.bytes_int8 == 160
    assert rnn.sparse_tensors_f32 == (kernel.name,)
    assert rnn.sparse_tensors_int8 == ()
    # Dense kernel (8, 2), 3 non-zeros, R = 2, C = 8 (uint8 index):
    # float32: 3 * 5 + 2 * 3 = 21 < 64; int8: 3 * 2 + 2 * 3 = 12 < 16; bias 2 * 4 either way
    assert dense.nonzero_params == 3
    assert (dense.bytes_f32, dense.bytes_int8) == (21 + 8, 12 + 8)
    assert len(dense.sparse_tensors_f32) == len(dense.sparse_tensors_int8) == 1
    assert (s.totals.bytes_f32, s.totals.bytes_int8) == (366 + 29, 160 + 20)


def test_csr_bytes_formula_and_limits():
    # 16 columns: uint8 column index; 300 columns: uint16; row pointers always uint16
    assert csr_bytes((16, 4), nonzero=6, value_bytes=1) == 6 * 2 + 2 * 5
    assert csr_bytes((16, 4), nonzero=6, value_bytes=4) == 6 * 5 + 2 * 5
    assert csr_bytes((256, 4), nonzero=6, value_bytes=1) == 6 * 2 + 2 * 5
    assert csr_bytes((257, 4), nonzero=6, value_bytes=1) == 6 * 3 + 2 * 5
    # column indices at most uint16: at most 65536 columns; row pointers: at most 65535 non-zeros
    assert csr_bytes((65536, 2), nonzero=1, value_bytes=1) is not None
    assert csr_bytes((65537, 2), nonzero=1, value_bytes=1) is None
    assert csr_bytes((300, 300), nonzero=65536, value_bytes=1) is None


def test_tfmot_pruned_model_counts_like_the_unwrapped_one():
    model = fastgrnn_model()
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model)
    plain, wrapped = summary(model), summary(pruned)
    assert [r.class_name for r in wrapped.layers] == [
        "PruneLowMagnitude(RNN(FastGRNNCell))",
        "PruneLowMagnitude(Dense)",
    ]
    fields = (
        "params",
        "nonzero_params",
        "bytes_f32",
        "bytes_int8",
        "macs_per_step",
        "macs_per_inference",
        "state_elements",
    )
    for a, b in zip(plain.layers, wrapped.layers):
        assert [getattr(a, f) for f in fields] == [getattr(b, f) for f in fields]
    assert wrapped.totals == plain.totals

    # The mask counts: zero all but 3 entries of the Dense kernel's mask (the kernel itself is
    # untouched, as it is between pruning steps).
    dense = pruned.layers[1]
    _weight, mask, _threshold = dense.pruning_vars[0]
    values = np.zeros(mask.shape, "float32")
    values[0, 0] = values[1, 1] = values[2, 0] = 1.0
    mask.assign(values)
    record = summary(pruned).layers[1]
    assert record.params == 18
    assert record.nonzero_params == 3  # the bias is still 0
    # kernel as CSR (C = 8: uint8 index): float32 3 * 5 + 2 * 3 = 21,
    # int8 3 * 2 + 2 * 3 = 12; bias 2 * 4
    assert (record.bytes_f32, record.bytes_int8) == (21 + 8, 12 + 8)


def test_qat_models_count_only_real_weights():
    qk = tfmot.quantization.keras
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4), keras.layers.Dense(2)])
    quantized = qk.quantize_model(model)
    s = summary(quantized)
    assert [r.class_name for r in s.layers] == [
        "QuantizeLayer",
        "QuantizeWrapperV2(Dense)",
        "QuantizeWrapperV2(Dense)",
    ]
    # the input QuantizeLayer's min/max are not parameters; 3*4 + 4 and 4*2 + 2
    assert [r.params for r in s.layers] == [0, 16, 10]
    # int8: kernels at 1 byte (12, 8), biases at 4 (4 * 4, 2 * 4)
    assert [r.bytes_int8 for r in s.layers] == [0, 28, 16]
    assert s.totals.params == summary(model).totals.params == 26


def test_reloaded_qat_model_counts_only_real_weights(tmp_path):
    """A QAT model loaded back (through keras_rnnedge's loadable copies of tfmot's
    QuantizeLayer/QuantizeWrapperV2, subclasses in another module) counts the same."""
    from keras_rnnedge.optimize import load_model, quantize_model

    model = keras.Sequential([keras.Input((5, 3)), keras.layers.RNN(FastGRNNCell(4)),
                              keras.layers.Dense(2)])
    qat = quantize_model(model)
    qat.save(tmp_path / "qat.keras")
    loaded = load_model(tmp_path / "qat.keras")
    assert type(loaded.layers[0]).__module__.startswith("keras_rnnedge")  # the subclass
    assert summary(loaded).layers[0].params == 0
    assert summary(loaded).totals.params == summary(qat).totals.params == summary(
        model).totals.params


class _CellKernelConfig(tfmot.quantization.keras.QuantizeConfig):
    """Quantizes only the cell's ``kernel`` (enough to exercise the wrapper's weight swap)."""

    def get_weights_and_quantizers(self, layer):
        quantizer = tfmot.quantization.keras.quantizers.LastValueQuantizer(
            num_bits=8, per_axis=False, symmetric=True, narrow_range=False
        )
        return [(layer.cell.kernel, quantizer)]

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        layer.cell.kernel = quantize_weights[0]

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return []

    def get_config(self):
        return {}


def test_qat_rnn_whose_kernel_the_wrapper_swapped():
    qk = tfmot.quantization.keras
    annotated = keras.Sequential(
        [
            keras.Input((STEPS, FEATURES)),
            qk.quantize_annotate_layer(
                keras.layers.RNN(FastGRNNCell(UNITS, u_rank=4), name="rnn"), _CellKernelConfig()
            ),
            qk.quantize_annotate_layer(keras.layers.Dense(2, name="dense")),
        ]
    )
    with qk.quantize_scope({"_CellKernelConfig": _CellKernelConfig}):
        quantized = qk.quantize_apply(annotated)
    # The wrapper replaced cell.kernel by a tensor, so the cell's own weights lack it.
    assert not any(w.name.endswith("/kernel:0") for w in quantized.layers[1].layer.weights)
    rnn = summary(quantized).layers[1]
    assert rnn.class_name == "QuantizeWrapperV2(RNN(FastGRNNCell))"
    assert (rnn.params, rnn.bytes_int8, rnn.macs_per_step) == (106, 160, 88)


def test_nested_model_layers_are_expanded():
    head = keras.Sequential(
        [keras.layers.Dense(4, name="hidden"), keras.layers.Dense(2, name="out")], name="head"
    )
    inputs = keras.Input((STEPS, FEATURES))
    x = keras.layers.RNN(FastGRNNCell(UNITS), name="rnn")(inputs)
    model = keras.Model(inputs, head(x), name="outer")
    s = summary(model)
    assert [r.name for r in s.layers] == ["rnn", "head/hidden", "head/out"]
    # full-rank FastGRNN: 3*8 + 8*8 + 2*8 + 2 = 106 as well; head 8*4 + 4 + 4*2 + 2
    assert [r.params for r in s.layers] == [106, 36, 10]
    assert [r.macs_per_inference for r in s.layers] == [88 * STEPS, 32, 8]


def test_dense_on_sequences_and_unknown_steps():
    inputs = keras.Input((None, FEATURES))
    x = keras.layers.RNN(FastGRNNCell(UNITS, u_rank=4), return_sequences=True)(inputs)
    x = keras.layers.Dense(2)(x)
    rnn, dense = summary(keras.Model(inputs, x)).layers
    assert rnn.macs_per_step == 88
    # T is not static: per-inference MACs are unknown, and so is their total
    assert rnn.macs_per_inference is None and dense.macs_per_inference is None
    assert "?" in summary(keras.Model(inputs, x)).to_text()


def test_unbuilt_model_is_refused():
    with pytest.raises(ValueError, match="not built.*keras.Input"):
        summary(keras.Sequential([keras.layers.Dense(2)]))


def test_non_model_is_refused():
    with pytest.raises(TypeError, match="expects a tf_keras Model.*Dense"):
        summary(keras.layers.Dense(2))


def test_print_fn_receives_the_table_once():
    lines = []
    s = summary(fastgrnn_model(), print_fn=lines.append)
    assert lines == [s.to_text()]


def test_to_dict_is_json_and_to_markdown_has_the_rows():
    s = summary(sparse_fastgrnn_model())
    data = json.loads(json.dumps(s.to_dict()))
    assert data["name"] == "demo"
    assert data["totals"]["params"] == 124
    assert data["layers"][0]["tensors"][0]["shape"] == [FEATURES, UNITS]
    assert data["layers"][0]["tensors"][0]["sparse_f32"] is True
    markdown = s.to_markdown()
    assert "| rnn | RNN(FastGRNNCell) | 106 | 86 | 366\\* | 160 |" in markdown
    assert "| **Total** |" in markdown


EXPECTED_TEXT = """\
Model: "demo"
===================================================================================================================
Layer  Class              Params  Non-zero  Bytes f32  Bytes int8  MACs/step  MACs/inference  State f32  State int8
-------------------------------------------------------------------------------------------------------------------
rnn    RNN(FastGRNNCell)     106        86       366*        160          88             880         32           8
dense  Dense                  18         3        29*         20*          -              16          -           -
-------------------------------------------------------------------------------------------------------------------
Total                        124        89       395         180          88             896         32           8
===================================================================================================================
Matrices (family: params of rows x cols, MACs per product):
  rnn/kernel            dense: 24 of 3x8 = 24, 24 MACs
  rnn/recurrent_kernel  low rank 4: 64 of 8x8 = 64, 64 MACs
Bytes: weights at float32 (4 B each) and int8 (1 B per matrix value, 4 B per bias or scalar as int32; quantization scales not counted).
*: at least one matrix stored sparse as CSR (value + uint8/uint16 column index per non-zero, uint16 row pointers) because that is smaller than dense.
MACs/step: multiply-accumulates of one time step of a recurrent layer (matrix products only).
MACs/inference: multiply-accumulates for one input sample (the whole sequence); ? = unknown.
State: recurrent-state RAM in bytes (elements x 4 at float32, x 1 at int8); the total is the peak when all recurrent layers run step by step."""  # noqa: E501


def test_text_snapshot():
    assert summary(sparse_fastgrnn_model()).to_text() == EXPECTED_TEXT


def test_matrix_families_with_their_true_costs():
    """A Kronecker kernel and a tensor-train recurrent kernel: parameters and MACs counted by
    hand from the factor shapes (test_matrices.py derives the formulas)."""
    cell = FastGRNNCell(32, kernel_structure={"family": "kronecker", "factors": [[3, 4], [3, 8]]},
                        recurrent_structure={"family": "tensor_train", "ranks": 2,
                                             "in_modes": [4, 8], "out_modes": [8, 4]})
    model = keras.Sequential([keras.Input((5, 9)), keras.layers.RNN(cell, name="rnn")])
    s = summary(model)
    kernel, recurrent = s.layers[0].matrices
    assert (kernel.family, kernel.shape, kernel.params) == ("kronecker 3x4⊗3x8", (9, 32), 36)
    assert kernel.macs == 3 * (3 * 8) + 8 * (3 * 4)  # the 3-mode over 3 rows, then 8 rows
    assert recurrent.params == 1 * 4 * 8 * 2 + 2 * 8 * 4 * 1 == 128
    # TT 2 cores: core 2 over (m1 = 4 rows) x (m2 r1 ... ): 4*8*4*2, core 1: n2 x (m1 r1) x n1
    assert recurrent.macs == 4 * 8 * 4 * 2 + 4 * 4 * 2 * 8
    assert s.layers[0].macs_per_step == kernel.macs + recurrent.macs
    assert s.layers[0].params == kernel.params + recurrent.params + 2 * 32 + 2
    text = s.to_text()
    assert "rnn/kernel            kronecker 3x4⊗3x8: 36 of 9x32 = 288, 168 MACs" in text
    assert s.to_dict()["layers"][0]["matrices"][1]["shape"] == [32, 32]


def test_compact_families_count_their_shared_values():
    """Block-circulant (9x32 padded to 12x32 in blocks of 4: 3 x 8 vectors of 4), Toeplitz
    (one value per diagonal) and hashed (K shared values): parameters and int8 bytes are the
    stored values; MACs are the dense matrix's (the C multiplies every entry)."""
    cell = FastGRNNCell(32, kernel_structure={"family": "block_circulant", "block": 4},
                        recurrent_structure={"family": "hashed", "buckets": 100})
    model = keras.Sequential([keras.Input((5, 9)), keras.layers.RNN(cell, name="rnn")])
    kernel, recurrent = summary(model).layers[0].matrices
    assert (kernel.params, kernel.macs) == (3 * 8 * 4, 9 * 32)
    assert (recurrent.params, recurrent.macs) == (100, 32 * 32)
    toeplitz = FastGRNNCell(32, kernel_structure="toeplitz")
    model = keras.Sequential([keras.Input((5, 9)), keras.layers.RNN(toeplitz, name="rnn")])
    s = summary(model)
    assert s.layers[0].matrices[0].params == 9 + 32 - 1
    assert s.layers[0].params == (9 + 32 - 1) + 32 * 32 + 2 * 32 + 2
