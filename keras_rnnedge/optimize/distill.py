"""Knowledge distillation into a compressed student, with ``model.fit``.

Hinton, Vinyals, Dean (2015), "Distilling the knowledge in a neural network": the student is
trained on ``alpha`` times the loss on the labels plus ``(1 - alpha)`` times ``T^2`` times the
Kullback-Leibler divergence from the teacher's softened distribution ``softmax(z_t / T)`` to
the student's ``softmax(z_s / T)`` (the ``T^2`` keeps the soft term's gradients on the scale of
the hard term's as ``T`` grows)::

    teacher = ...  # a trained stock LSTM/GRU model with logits outputs
    student = keras.Sequential([keras.Input((128, 9)),
                                keras.layers.RNN(FastGRNNCell(32, u_rank=8)),
                                keras.layers.Dense(6)])
    distiller = Distiller(student, teacher, temperature=4.0, alpha=0.3)
    distiller.compile(keras.optimizers.Adam(1e-2), metrics=["accuracy"])
    distiller.fit(x, y, validation_data=(x_val, y_val), epochs=30,
                  callbacks=[HardThresholding(...)])   # act on the student only
    student.save("student.keras")                      # what the converters take

The teacher is frozen and not tracked by the distiller: the project's callbacks
(``HardThresholding``, ``GrowAndPrune``, tfmot's pruning step) see the student's layers only,
and ``distiller.save`` would not hold it (save the student). Both models must output logits
(no softmax layer) of the same number of classes; labels are integer class ids.
"""

from __future__ import annotations

from keras_rnnedge._compat import keras, np, tf

__all__ = ["Distiller"]


def _check_rate(value, name: str, low: float, high: float | None) -> float:
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
            or not np.isfinite(float(value)) or float(value) < low
            or (high is not None and float(value) > high)):
        bound = f"[{low:g}, {high:g}]" if high is not None else f"> {low:g}"
        raise ValueError(f"Received {name}={value!r}; expected a number in {bound}.")
    return float(value)


class Distiller(keras.Model):
    """A student trained on labels and a frozen teacher's soft targets (see the module
    docstring).

    Args:
        student: the model to train (a ``keras.Model`` producing logits).
        teacher: a trained ``keras.Model`` producing logits of the same shape; frozen.
        temperature: ``T`` (> 0); Hinton et al. use 1-20, 2-5 is common for small students.
        alpha: weight of the hard-label loss in [0, 1] (0: soft targets only).

    ``compile(optimizer, metrics=...)`` takes the usual arguments; the hard loss is sparse
    categorical cross-entropy on logits unless ``loss`` is given. Metrics are the student's.
    ``distiller(x)`` and ``predict`` run the student.

    Raises:
        TypeError: ``student`` or ``teacher`` is not a Keras model.
        ValueError: ``temperature`` or ``alpha`` out of range, or the two models' output shapes
            differ.
    """

    def __init__(self, student, teacher, *, temperature: float = 4.0, alpha: float = 0.5,
                 **kwargs):
        super().__init__(**kwargs)
        for name, m in (("student", student), ("teacher", teacher)):
            if not isinstance(m, keras.Model):
                raise TypeError(f"Expected {name} to be a keras.Model, but got "
                                f"{type(m).__name__}.")
        s_shape, t_shape = tuple(student.output_shape), tuple(teacher.output_shape)
        if s_shape != t_shape:
            raise ValueError(f"The student's output shape {s_shape} differs from the teacher's "
                             f"{t_shape}; both must output the logits of the same classes.")
        self.student = student
        teacher.trainable = False
        object.__setattr__(self, "teacher", teacher)  # untracked: callbacks see the student
        self.temperature = _check_rate(temperature, "temperature", 0.0, None)
        if self.temperature == 0.0:
            raise ValueError("Received temperature=0; expected a number > 0.")
        self.alpha = _check_rate(alpha, "alpha", 0.0, 1.0)
        self._kl = keras.losses.KLDivergence(reduction=keras.losses.Reduction.NONE)

    def compile(self, optimizer="adam", loss=None, metrics=None, **kwargs):
        hard = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        self.hard_loss = keras.losses.get(hard) if isinstance(hard, str) else hard
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)

    def call(self, inputs, training=None):
        return self.student(inputs, training=training)

    def distillation_loss(self, y, student_logits, teacher_logits):
        """``alpha * hard(y, z_s) + (1 - alpha) * T^2 * KL(softmax(z_t/T) || softmax(z_s/T))``,
        the KL averaged over the batch."""
        t = self.temperature
        soft = tf.reduce_mean(self._kl(tf.nn.softmax(teacher_logits / t, axis=-1),
                                       tf.nn.softmax(student_logits / t, axis=-1)))
        hard = self.hard_loss(y, student_logits)
        return self.alpha * hard + (1.0 - self.alpha) * (t * t) * soft

    def train_step(self, data):
        x, y = data[0], data[1]
        teacher_logits = self.teacher(x, training=False)
        with tf.GradientTape() as tape:
            logits = self.student(x, training=True)
            loss = self.distillation_loss(y, logits, teacher_logits)
            if self.student.losses:
                loss = loss + tf.add_n(self.student.losses)
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return self._report(y, logits, loss)

    def test_step(self, data):
        x, y = data[0], data[1]
        logits = self.student(x, training=False)
        loss = self.distillation_loss(y, logits, self.teacher(x, training=False))
        return self._report(y, logits, loss)

    def _report(self, y, logits, loss):
        self.compiled_metrics.update_state(y, logits)
        out = {m.name: m.result() for m in self.metrics}
        out["loss"] = loss
        return out

    def get_config(self):
        raise NotImplementedError("Save the student (distiller.student.save(...)); the "
                                  "distiller is a training wrapper.")
