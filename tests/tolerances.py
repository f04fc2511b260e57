"""Every numeric tolerance of the test suite, each with its reason."""

# float32 Keras cell against the float64 NumPy oracle over <= 12 steps: float32 rounding of
# matrix products (relative error ~1e-7 per op) accumulated through a few dozen ops per step.
CELL_VS_NUMPY_ATOL = 2e-5

# Two float32 computations of the same arithmetic in a different order (XLA fusion vs eager,
# factored vs folded products, stateful halves vs one call): reassociation only.
REORDER_ATOL = 1e-5

# One optimizer step under MirroredStrategy(2 replicas) vs one device: the gradient is the
# all-reduced sum of two half-batch gradients instead of one full-batch gradient (reassociation
# of float32 sums), then scaled by the learning rate.
DISTRIBUTED_ATOL = 1e-5
