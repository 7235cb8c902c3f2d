"""The reference sample: the most recent training sequences of one BNLSTM,
kept so that its population statistics can be re-estimated with the
weights as they are after training.

Moving averages of the batch moments describe weights that have since
changed: early in training one optimizer step moves the per-step moments
by a few percent, and a recurrence amplifies the error (on sequential
digits, statistics one step stale cost 20 points of accuracy). The
moments of a single batch computed with the current weights are enough.
So the layer keeps its latest training inputs here, and its first
inference after training runs them through the recurrence once.

The sample is state of this process, as a seed generator's is, not a
parameter of the model: it is not among the layer's weights, so it stays
out of `get_weights()`, `count_params()`, `summary()`, model and weight
files and exports. People share those, and these are training data. It is
a plain object, which neither Keras nor TensorFlow tracks; the layer lists
its variables among its `variables` only on JAX, whose compiled steps
carry nothing else in and out (see `BNLSTM.variables`).
"""

import keras
from keras import ops

# The entries of `status`.
STALE, NEXT, FILLED, OFFSET = range(4)


class ReferenceSample:
    """A ring buffer of the latest `size` training sequences of a BNLSTM,
    in the order the layer processes their steps, with their weights (0 for
    masked steps), initial states and time-step offset, and whether the
    layer trained on them since its statistics were last re-estimated.

    Args:
        units: the layer's units (the initial states are kept too).
    """

    def __init__(self, units):
        self.units = units
        self.size = None
        self.variables = []

    @property
    def built(self):
        return bool(self.variables)

    def build(self, input_shape):
        """`input_shape` is `(sequences, timesteps, features)`: how many
        sequences are kept, and the shape of each."""
        self.size, timesteps, features = input_shape

        def kept(shape, name):
            variable = state_variable(shape, name)
            self.variables.append(variable)
            return variable

        self.sequences = kept(
            (self.size, timesteps, features + 1), "reference_sequences"
        )
        self.states = kept((self.size, 2 * self.units), "reference_states")
        self.status = kept((4,), "reference_status")

    @property
    def stale(self):
        """Boolean scalar: the layer trained since its statistics were
        re-estimated."""
        return ops.convert_to_tensor(self.status)[STALE] > 0.5

    def remember(self, x, weights, h0, c0, offset, keep=True):
        """Keeps the last sequences of a training batch.

        Args:
            x: `(batch, timesteps, features)`, steps in processing order.
            weights: `(batch, timesteps, 1)` 0/1 weights, or `None`.
            h0, c0: the batch's initial states.
            offset: the time-step index of its first step.
            keep: whether to keep them (a boolean scalar); the layer is
                marked as trained either way.
        """
        timesteps = self.sequences.shape[1]
        x = ops.cast(ops.stop_gradient(x), "float32")
        if weights is None:
            weights = ops.ones_like(x[..., :1])
        rows = ops.concatenate([x, ops.cast(weights, "float32")], axis=-1)
        # Steps past the kept length never reach a statistics row of their
        # own; shorter sequences are padded with steps of weight 0.
        rows = rows[:, :timesteps]
        missing = timesteps - ops.shape(rows)[1]
        rows = ops.pad(rows, [[0, 0], [0, missing], [0, 0]])
        states = ops.cast(
            ops.stop_gradient(ops.concatenate([h0, c0], axis=-1)), "float32"
        )
        batch = ops.shape(rows)[0]
        # A Python number where the batch size is static: JAX needs the
        # shapes below to be.
        count = (min(batch, self.size) if isinstance(batch, int)
                 else ops.minimum(batch, self.size))
        newest = slice(batch - count, None)
        # Tensors, not variables: JAX would capture a variable passed to
        # one of its functions as a constant of the compiled step.
        status = ops.convert_to_tensor(self.status)
        position = ops.cast(status[NEXT], "int32")
        slots = ops.mod(position + ops.arange(count, dtype="int32"),
                        self.size)[:, None]
        keep = ops.convert_to_tensor(keep)
        for variable, new in ((self.sequences, rows[newest]),
                              (self.states, states[newest])):
            old = ops.convert_to_tensor(variable)
            variable.assign(
                ops.where(keep, ops.scatter_update(old, slots, new), old)
            )
        count = ops.cast(count, "float32")
        kept = ops.stack([
            1.0,
            ops.mod(ops.cast(position, "float32") + count, self.size),
            ops.minimum(status[FILLED] + count, self.size),
            ops.cast(offset, "float32"),
        ])
        marked = ops.where(ops.arange(4) == STALE, 1.0, status)
        self.status.assign(ops.where(keep, kept, marked))

    def contents(self):
        """`(x, weights, h0, c0, offset)` as `remember` took them; slots
        never filled have weight 0."""
        sequences = ops.convert_to_tensor(self.sequences)
        status = ops.convert_to_tensor(self.status)
        filled = ops.arange(self.size, dtype="float32") < status[FILLED]
        weights = sequences[..., -1:] * ops.cast(filled, "float32")[:, None,
                                                                    None]
        h0, c0 = ops.split(ops.convert_to_tensor(self.states), 2, axis=-1)
        offset = ops.cast(status[OFFSET], "int32")
        return sequences[..., :-1], weights, h0, c0, offset

    def mark_fresh(self):
        """Records that the statistics match the weights again."""
        self.status.assign(ops.where(
            ops.arange(4) == STALE, 0.0, ops.convert_to_tensor(self.status)
        ))


def state_variable(shape, name, dtype="float32"):
    """A zero-filled variable of a layer's process state (see the module's
    docstring). Under a `tf.distribute` strategy the first replica's value
    is kept, not a mean of different sequences; synchronized layers gather
    the global batch first."""
    return keras.Variable(
        "zeros", shape=shape, dtype=dtype, trainable=False, autocast=False,
        aggregation="only_first_replica", name=name,
    )


class ProcessState:
    """What a BNLSTM keeps for this process only: the reference sample,
    the batch size its compiled loops run at, and its traced functions.
    None of it is a weight, and none of it is saved. A plain object, so
    that neither Keras nor TensorFlow tracks it: a dictionary of traced
    functions on a layer becomes a tracked wrapper that an export cannot
    save, and a tracked variable goes into checkpoints.

    Args:
        sample: the layer's `ReferenceSample`, or `None`.
    """

    def __init__(self, sample):
        self.sample = sample
        self.batch_quantum = None
        self.traced_refresh = None
        self.inference_functions = {}

    def variables(self):
        sample = [] if self.sample is None else self.sample.variables
        quantum = [] if self.batch_quantum is None else [self.batch_quantum]
        return sample + quantum
