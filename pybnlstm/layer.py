"""The recurrent batch-normalized LSTM layer: the sequence loop and the
population statistics."""

import itertools

import keras
from keras import ops

from pybnlstm import _checks, _loop, _replicas
from pybnlstm.cell import BNLSTMCell, projected_moments
from pybnlstm.statistics import update_population_statistics


@keras.saving.register_keras_serializable(package="pybnlstm")
class BNLSTM(keras.layers.RNN):
    """Recurrent batch-normalized LSTM layer (Cooijmans et al., 2016).

    A drop-in for `keras.layers.LSTM` that batch-normalizes inside the
    recurrence. At each time step t, with gates in Keras' order i, f, g, o:

    ```
    z   = BN_t(x_t W; gamma_x) + BN_t(h_{t-1} U; gamma_h) + b
    c_t = sig(f) * c_{t-1} + sig(i) * act(g)
    h_t = sig(o) * act(BN_t(c_t; gamma_c, beta_c))
    ```

    In training, `BN_t` uses the batch mean and biased variance of step t
    (masked samples excluded) and the layer updates per-step moving
    averages, debiased by a per-row count of updates (`moving_count`): the
    first update of a row takes the batch statistic itself, and rows never
    updated copy the nearest updated row before them. In inference, and
    when the layer is frozen (`trainable=False`), it uses those population
    statistics, so a sample's output never depends on the rest of its
    batch; steps past `max_timesteps - 1` use the last row. Any batch size
    works.

    The weights are `kernel`, `recurrent_kernel` and `bias`, laid out as in
    `keras.layers.LSTM` (see `pybnlstm.load_lstm_weights`), the trainable
    `gamma_x`, `gamma_h`, `gamma_c`, `beta_c`, and the non-trainable
    `moving_{mean,variance}_{x,h,c}` of shape `(max_timesteps, features)`.

    On TensorFlow, with the default activations (`tanh`, `sigmoid`) in
    float32, the recurrence runs XLA-compiled, as Keras' LSTM picks cuDNN
    for its defaults (see `use_xla`): training as two loops, forward and a
    written-out backward; inference, inside a traced function such as
    `predict()`'s, as one. XLA compiles once per input shape: the first
    batch of each shape takes a few seconds longer, and the first
    compilation in a process sets up XLA's compiler (about 150 MiB). Other
    activations, mixed precision and `synchronized=True` run a
    step-by-step loop.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation function to use. Default: hyperbolic tangent
            (`tanh`).
        recurrent_activation: Activation function for the gates. Default:
            sigmoid (`sigmoid`).
        use_bias: Boolean (default `True`), whether the layer uses a bias
            vector.
        kernel_initializer: Initializer for the `kernel` weights matrix.
            Default: `"glorot_uniform"`.
        recurrent_initializer: Initializer for the `recurrent_kernel`
            weights matrix. Default: `"orthogonal"`.
        bias_initializer: Initializer for the bias vector. Default:
            `"zeros"`.
        unit_forget_bias: Boolean (default `True`). If `True`, add 1 to the
            bias of the forget gate at initialization.
        gamma_initializer: Initializer for the three gammas, or a number for
            a constant. Default: `0.1`, as in the paper.
        beta_initializer: Initializer for `beta_c`. Default: `"zeros"`.
        kernel_regularizer: Regularizer function applied to the `kernel`
            weights matrix. Default: `None`.
        recurrent_regularizer: Regularizer function applied to the
            `recurrent_kernel` weights matrix. Default: `None`.
        bias_regularizer: Regularizer function applied to the bias vector.
            Default: `None`.
        activity_regularizer: Regularizer function applied to the output of
            the layer. Default: `None`.
        kernel_constraint: Constraint function applied to the `kernel`
            weights matrix. Default: `None`.
        recurrent_constraint: Constraint function applied to the
            `recurrent_kernel` weights matrix. Default: `None`.
        bias_constraint: Constraint function applied to the bias vector.
            Default: `None`.
        dropout: Float in [0, 1). Fraction of the units to drop for the
            linear transformation of the inputs. Default: 0.
        recurrent_dropout: Float in [0, 1). Fraction of the units to drop
            for the linear transformation of the recurrent state. Default:
            0.
        seed: Random seed for dropout.
        max_timesteps: Positive integer, the number of time steps that keep
            their own population statistics. Default: the input's length at
            build time (an error if that is unknown).
        momentum: Momentum of the debiased moving averages, in [0, 1] (1
            keeps a running mean). Default: `0.5`, lower than Keras'
            BatchNormalization: the statistics of a recurrence shift by a
            few percent with each optimizer step early in training, and
            inference is sensitive to stale ones, so a short memory tracks
            the weights better. For statistics that match the final
            weights exactly, use `pybnlstm.recompute_statistics` or the
            `pybnlstm.RecomputeStatistics` callback.
        epsilon: Small positive float added to the variance. Default:
            `1e-3`.
        synchronized: Boolean (default `False`), as in Keras'
            `BatchNormalization`. If `True`, the per-step batch moments are
            summed across the replicas of the current `tf.distribute`
            strategy (`MirroredStrategy`, `MultiWorkerMirroredStrategy`),
            so that 2 replicas of 32 samples normalize, and update the
            population statistics, exactly as one batch of 64. It costs
            two all-reduces per normalization and step. TensorFlow backend
            only; outside a strategy it changes nothing.
        return_sequences: Boolean. Whether to return the last output in the
            output sequence, or the full sequence. Default: `False`.
        return_state: Boolean. Whether to return the last state in addition
            to the output. Default: `False`.
        go_backwards: Boolean (default: `False`). If `True`, process the
            input sequence backwards and return the reversed sequence. The
            statistics are indexed by processing step.
        stateful: Boolean (default: `False`). If `True`, the last state and
            the time-step index of each batch carry over to the next batch;
            `reset_state()` resets both.
        unroll: Boolean (default: `False`). If `True`, the network is
            unrolled, else a symbolic loop is used.
        use_xla: `"auto"` (default), `True` or `False`, as Keras' LSTM's
            `use_cudnn`: whether the recurrence runs XLA-compiled, in
            training and in traced inference. `"auto"` compiles it where
            that applies (TensorFlow backend, default activations,
            float32, `synchronized=False`, `unroll=False`); `True` raises
            an error where it does not; `False` runs the step-by-step
            loop, which compiles nothing and so holds less memory in a
            short process. Inference under a gradient tape (a frozen layer
            in `fit()`) runs step by step whatever the setting: TensorFlow
            cannot differentiate a compiled loop called from an
            uncompiled function.

    Call arguments:
        inputs: A 3D tensor, with shape `(batch, timesteps, feature)`.
        mask: Binary tensor of shape `(samples, timesteps)` indicating
            whether a given timestep should be masked (optional). A masked
            step keeps the previous state and does not enter that step's
            batch moments.
        training: Python boolean indicating whether the layer should behave
            in training mode or in inference mode. `fit()` sets it;
            `predict()` and `evaluate()` leave it off.
        initial_state: List of initial state tensors `[h, c]` to be passed
            to the first call of the cell (optional, zeros if not given).

    Example:

    >>> inputs = np.random.random((32, 10, 8))
    >>> bnlstm = pybnlstm.BNLSTM(4)
    >>> output = bnlstm(inputs)
    >>> output.shape
    (32, 4)
    >>> bnlstm = pybnlstm.BNLSTM(4, return_sequences=True, return_state=True)
    >>> whole_seq_output, final_h, final_c = bnlstm(inputs)
    >>> whole_seq_output.shape
    (32, 10, 4)

    Reference:
        - [Cooijmans et al., 2016](https://arxiv.org/abs/1603.09025)
    """

    def __init__(
        self,
        units,
        activation="tanh",
        recurrent_activation="sigmoid",
        use_bias=True,
        kernel_initializer="glorot_uniform",
        recurrent_initializer="orthogonal",
        bias_initializer="zeros",
        unit_forget_bias=True,
        gamma_initializer=0.1,
        beta_initializer="zeros",
        kernel_regularizer=None,
        recurrent_regularizer=None,
        bias_regularizer=None,
        activity_regularizer=None,
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        dropout=0.0,
        recurrent_dropout=0.0,
        seed=None,
        max_timesteps=None,
        momentum=0.5,
        epsilon=1e-3,
        synchronized=False,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_xla="auto",
        **kwargs,
    ):
        cell = BNLSTMCell(
            units,
            activation=activation,
            recurrent_activation=recurrent_activation,
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            recurrent_initializer=recurrent_initializer,
            bias_initializer=bias_initializer,
            unit_forget_bias=unit_forget_bias,
            gamma_initializer=gamma_initializer,
            beta_initializer=beta_initializer,
            kernel_regularizer=kernel_regularizer,
            recurrent_regularizer=recurrent_regularizer,
            bias_regularizer=bias_regularizer,
            kernel_constraint=kernel_constraint,
            recurrent_constraint=recurrent_constraint,
            bias_constraint=bias_constraint,
            max_timesteps=max_timesteps,
            momentum=momentum,
            epsilon=epsilon,
            synchronized=synchronized,
            dtype=kwargs.get("dtype"),
            trainable=kwargs.get("trainable", True),
            name="bnlstm_cell",
        )
        super().__init__(
            cell,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            stateful=stateful,
            unroll=unroll,
            activity_regularizer=activity_regularizer,
            **kwargs,
        )
        self.dropout = _checks.fraction("dropout", dropout, False)
        self.recurrent_dropout = _checks.fraction(
            "recurrent_dropout", recurrent_dropout, False
        )
        if seed is not None and not isinstance(seed, int):
            raise TypeError(
                "Received an invalid value for argument `seed`, expected an "
                f"integer or None, got {seed!r}"
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_spec = keras.InputSpec(ndim=3)
        self._statistics_collector = None
        if not (use_xla == "auto" or isinstance(use_xla, bool)):
            raise ValueError(
                "Received an invalid value for argument `use_xla`, expected "
                f"'auto', True or False, got {use_xla!r}"
            )
        self.use_xla = use_xla
        unavailable = self._xla_unavailable()
        if use_xla is True and unavailable:
            raise ValueError(
                "Received use_xla=True, but the XLA-compiled recurrence "
                f"needs {unavailable}. Use use_xla='auto' or False."
            )

    def build(self, sequences_shape, initial_state_shape=None):
        if len(sequences_shape) != 3:
            raise ValueError(
                "Received an invalid input for layer BNLSTM, expected a 3D "
                "tensor (batch, timesteps, features), got shape "
                f"{tuple(sequences_shape)}"
            )
        if self.cell.max_timesteps is None:
            if sequences_shape[1] is None:
                raise ValueError(
                    "Received no value for argument `max_timesteps` and an "
                    "input of unknown length (shape "
                    f"{tuple(sequences_shape)}). Give `max_timesteps`, the "
                    "number of time steps that keep their own population "
                    "statistics, or an input shape with a known length."
                )
            self.cell.max_timesteps = int(sequences_shape[1])
        super().build(sequences_shape, initial_state_shape)

    def get_initial_state(self, batch_size):
        """Zero states `[h, c, step]`; `step` is the time-step index."""
        return self.cell.get_initial_state(batch_size)

    def compute_output_shape(self, sequences_shape, initial_state_shape=None):
        batch, length = sequences_shape[0], sequences_shape[1]
        units = self.cell.units
        output = (batch, length, units) if self.return_sequences else (
            batch,
            units,
        )
        if self.return_state:
            return output, (batch, units), (batch, units)
        return output

    def compute_mask(self, _, mask):
        mask = keras.tree.flatten(mask)[0] if mask is not None else None
        output_mask = mask if self.return_sequences else None
        if self.return_state:
            return [output_mask, None, None]
        return output_mask

    def call(self, sequences, initial_state=None, mask=None, training=False):
        if self.unroll and sequences.shape[1] is None:
            raise ValueError(
                "Cannot unroll a BNLSTM if the time dimension is undefined; "
                "give the input a known length or use unroll=False."
            )
        batch_size = ops.shape(sequences)[0]
        offset = 0
        if initial_state is None and self.stateful:
            if (
                sequences.shape[0] is not None
                and sequences.shape[0] != self.states[0].shape[0]
            ):
                raise ValueError(
                    "If a BNLSTM is stateful, the batch size of the input "
                    "sequences must be the batch size it was built with. "
                    f"Expected {self.states[0].shape[0]}, received "
                    f"{sequences.shape[0]}."
                )
            # Copies: on PyTorch the states are assigned in place after the
            # loop, which would corrupt tensors that autograd still needs.
            h0, c0 = (ops.copy(v.value) for v in self.states[:2])
            offset = ops.cast(self.states[2].value[0, 0], "int32")
        elif initial_state is None:
            h0, c0, _ = self.get_initial_state(batch_size)
        else:
            states = keras.tree.flatten(initial_state)
            if len(states) != 2:
                raise ValueError(
                    "Received an invalid value for argument `initial_state`, "
                    f"expected a list of 2 tensors [h, c], got {len(states)}"
                )
            h0, c0 = states
        h0 = ops.cast(h0, self.compute_dtype)
        c0 = ops.cast(c0, self.compute_dtype)
        if mask is not None:
            mask = keras.tree.flatten(mask)[0]

        last_output, outputs, (h, c) = self.inner_loop(
            sequences, (h0, c0, offset), mask, training
        )
        if self.stateful:
            length = ops.cast(ops.shape(sequences)[1], "float32")
            self.states[0].assign(h)
            self.states[1].assign(c)
            self.states[2].assign(self.states[2].value + length)

        output = outputs if self.return_sequences else last_output
        if self.return_state:
            return output, h, c
        return output

    def inner_loop(self, sequences, initial_state, mask, training=False):
        """Runs the recurrence over a whole sequence.

        Args:
            sequences: `(batch, timesteps, features)` inputs.
            initial_state: `(h0, c0, offset)`, where `offset` is the
                time-step index of the first step (int or int32 scalar).
            mask: optional `(batch, timesteps)` boolean mask.
            training: Python boolean.

        Returns:
            `(last_output, outputs, (h, c))`; `outputs` is `None` unless
            `return_sequences`.
        """
        cell = self.cell
        h0, c0, offset = initial_state
        x = ops.cast(sequences, self.compute_dtype)
        if self.go_backwards:
            x = ops.flip(x, axis=1)
            mask = None if mask is None else ops.flip(mask, axis=1)
        weights = None if mask is None else ops.cast(mask[:, :, None], x.dtype)

        batch_size, length = ops.shape(x)[0], ops.shape(x)[1]
        training = bool(training)
        # Batch moments in training, unless the layer is frozen: then, as
        # Keras' BatchNormalization does, the population statistics. While
        # `recompute_statistics` collects, batch moments without dropout.
        collector = self._statistics_collector
        batch_norm = (training and self.trainable) or collector is not None
        if training and self.dropout > 0:
            x = x * self._dropout_mask((batch_size, x.shape[-1]))[:, None, :]
        recurrent_mask = None
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self._dropout_mask(
                (batch_size, cell.units), self.recurrent_dropout
            )

        steps = offset + ops.arange(length, dtype="int32")
        time_major = lambda t: ops.moveaxis(t, 1, 0)  # noqa: E731
        if batch_norm:
            x_moments = projected_moments(
                x, cell.kernel, weights, cell.synchronized
            )
            norm = cell.batch_normalization(x_moments)
        else:
            norm = cell.population_normalization(
                ops.clip(steps, 0, cell.max_timesteps - 1)
            )
        # One tensor read per step rather than several: each read costs
        # the loop ops, and more when it needs a gradient.
        norm_keys = list(norm)
        norm_ends = list(
            itertools.accumulate(norm[k].shape[-1] for k in norm_keys)
        )
        xs = {
            "x": time_major(x),
            "norm": ops.concatenate([norm[k] for k in norm_keys], axis=-1),
        }
        if weights is not None:
            xs["weights"] = time_major(weights)

        recurrence = cell.recurrence()

        def step(carry, inputs):
            h_prev, c_prev = carry[0], carry[1]
            if recurrent_mask is not None:
                h_prev = h_prev * recurrent_mask
            norm = dict(
                zip(norm_keys, ops.split(inputs["norm"], norm_ends[:-1], -1))
            )
            h, c, moments = recurrence(
                inputs["x"], h_prev, c_prev, norm, inputs.get("weights")
            )
            if "weights" in inputs:
                keep = inputs["weights"] > 0
                h = ops.where(keep, h, carry[0])
                c = ops.where(keep, c, c_prev)
            # The outputs are stored only when returned: the last one is the
            # final state.
            ys = (h,) if self.return_sequences else ()
            return (h, c), ys + ((moments,) if batch_norm else ())

        # tf.distribute cannot all-reduce inside a tf.while_loop (its
        # merge_call refuses control flow), so synchronized statistics
        # across replicas need the loop unrolled.
        unroll = self.unroll or (
            batch_norm
            and cell.synchronized
            and _replicas.replicas_in_sync() > 1
        )
        if unroll and sequences.shape[1] is None:
            raise ValueError(
                "A BNLSTM with synchronized=True needs inputs of a known "
                "length under a tf.distribute strategy, because the time "
                "loop is unrolled there; received input shape "
                f"{tuple(sequences.shape)}"
            )
        # _fused() rules out both reasons to unroll.
        if batch_norm and self._fused():
            final, history = self._fused_recurrence(
                xs, (h0, c0), recurrent_mask
            )
        else:
            y_dtypes = (
                (self.compute_dtype,) if self.return_sequences else ()
            ) + (("float32",) if batch_norm else ())
            final, history = _loop.scan(
                step, (h0, c0), xs, y_dtypes, unroll,
                differentiated=batch_norm,
                jit_compile=not batch_norm and self._fused(),
            )

        outputs = None
        last_output = final[0]
        if self.return_sequences:
            outputs = time_major(history[0])
            if self.zero_output_for_mask and weights is not None:
                outputs = outputs * weights
            last_output = outputs[:, -1]
        elif self.zero_output_for_mask and weights is not None:
            last_output = last_output * weights[:, -1]
        if batch_norm:
            if weights is None:
                counts = ops.full((length,), batch_size, dtype="float32")
            else:
                counts = ops.sum(ops.cast(weights, "float32"), axis=(0, 2))
            if cell.synchronized:
                counts = _replicas.replica_sum(counts)
            width = 4 * cell.units
            h_mean, h_variance, c_mean, c_variance = ops.split(
                history[-1],
                [width, 2 * width, 2 * width + cell.units],
                axis=-1,
            )
            batch_stats = {
                ("x", "mean"): x_moments[0],
                ("x", "variance"): x_moments[1],
                ("h", "mean"): h_mean,
                ("h", "variance"): h_variance,
                ("c", "mean"): c_mean,
                ("c", "variance"): c_variance,
            }
            if collector is not None:
                collector(steps, counts, batch_stats)
            else:
                update_population_statistics(
                    cell, steps, counts, batch_stats
                )
        return last_output, outputs, final

    def _fused(self):
        """Whether the recurrence runs XLA-compiled: in training,
        `_tf_fused`'s loops; in traced inference, `_loop.scan`'s."""
        return self.use_xla is not False and not self._xla_unavailable()

    def _xla_unavailable(self):
        """What the compiled recurrence needs that this layer lacks, in
        words, or `None`. Synchronized statistics need the step-by-step
        loop, whose all-reduces a compiled loop cannot make."""
        cell = self.cell
        needs = {
            "the TensorFlow backend": keras.backend.backend() == "tensorflow",
            "activation='tanh'": cell.activation is keras.activations.tanh,
            "recurrent_activation='sigmoid'": (
                cell.recurrent_activation is keras.activations.sigmoid
            ),
            "float32 computation": self.compute_dtype == "float32",
            "synchronized=False": not cell.synchronized,
            "unroll=False": not self.unroll,
        }
        missing = [need for need, met in needs.items() if not met]
        return ", ".join(missing) if missing else None

    def _fused_recurrence(self, xs, initial_state, recurrent_mask):
        # Imported here: on JAX or PyTorch, TensorFlow need not be installed.
        from pybnlstm import _tf_fused

        cell = self.cell
        weights = xs.get("weights")
        run = _tf_fused.training_recurrence(
            cell.units,
            cell.epsilon,
            self.return_sequences,
            weights is not None,
            recurrent_mask is not None,
        )
        outputs, h, c, moments = run(
            xs["x"],
            xs["norm"],
            *initial_state,
            ops.copy(cell.kernel),
            ops.copy(cell.recurrent_kernel),
            *(ops.copy(v) for v in (cell.gamma_h, cell.gamma_c, cell.beta_c)),
            weights,
            recurrent_mask,
        )
        history = ((outputs,) if self.return_sequences else ()) + (moments,)
        return (h, c), history

    def _dropout_mask(self, shape, rate=None):
        rate = self.dropout if rate is None else rate
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate, seed=self.seed_generator)

    def get_config(self):
        config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        config.update(
            {
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed,
                "use_xla": self.use_xla,
                "activity_regularizer": keras.saving.serialize_keras_object(
                    self.activity_regularizer
                ),
            }
        )
        base = super().get_config()
        del base["cell"]
        return {**base, **config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)



def _cell_property(name):
    return property(
        lambda self: getattr(self.cell, name),
        doc=f"The cell's `{name}`.",
    )


# The cell's arguments read as the layer's, as in keras.layers.LSTM.
for _name in (
    "units activation recurrent_activation use_bias unit_forget_bias "
    "kernel_initializer recurrent_initializer bias_initializer "
    "gamma_initializer beta_initializer kernel_regularizer "
    "recurrent_regularizer bias_regularizer kernel_constraint "
    "recurrent_constraint bias_constraint max_timesteps momentum epsilon "
    "synchronized"
).split():
    setattr(BNLSTM, _name, _cell_property(_name))
del _name
