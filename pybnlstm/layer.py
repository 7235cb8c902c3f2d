"""The recurrent batch-normalized LSTM layer: its arguments, its call, its
configuration. It inherits the sequence loop (`sequence.py`), the
population statistics (`statistics.py`) and the compiled path
(`xla.py`); the step itself is the cell's (`cell.py`)."""

import keras
from keras import ops

from pybnlstm import _checks, _loop, _replicas
from pybnlstm.cell import BNLSTMCell
from pybnlstm.sample import ProcessState, ReferenceSample, state_variable
from pybnlstm.sequence import SequenceLoop, warn_if_one_sequence
from pybnlstm.statistics import PopulationStatistics
from pybnlstm.xla import XlaPath


@keras.saving.register_keras_serializable(package="pybnlstm")
class BNLSTM(SequenceLoop, PopulationStatistics, XlaPath, keras.layers.RNN):
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

    Moving averages lag behind weights that train, so the layer also keeps
    its latest `statistics_sample` training sequences (its
    `reference_sample`: state of the process, never a weight, never saved
    or exported). Its first inference call after training (`predict()`,
    `evaluate()`, validation in `fit()`, or a plain call) first
    re-estimates the statistics: one training-mode pass over that sample
    as one batch, with the weights as they are and without dropout, whose
    moments replace each row it reaches. Reading the weights
    (`get_weights()`, saving, exporting) does the same first, so what
    leaves the layer predicts as the live one. `pybnlstm.recompute_statistics`
    pools the moments over a whole data set instead.

    With a mask, time steps are counted per sequence: the t-th unmasked
    step of each sequence uses statistics row t, wherever padding put it,
    so a sequence's outputs do not depend on its padding or on the other
    sequences of its batch. With `go_backwards`, the backward pass starts
    at each sequence's last unmasked step, as Keras' cuDNN path does.

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
        input_statistics: `"step"` (default) or `"sequence"`. With
            `"sequence"`, the input term `x_t W` is normalized with
            statistics shared by all time steps (masked steps excluded),
            the paper's option for data of varied length; the recurrent
            and cell terms keep per-step statistics. Row 0 of
            `moving_mean_x` and `moving_variance_x` holds the shared ones.
        statistics_sample: Non-negative integer (default 512), how many
            of its latest training sequences the layer keeps to
            re-estimate its statistics before inference (see above); it
            holds `statistics_sample * max_timesteps * (features + 1)`
            floats. A stateful layer keeps its last batch that began
            within `max_timesteps` steps instead. 0 keeps none: inference
            then uses the moving averages.
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
        use_cudnn: Another name for `use_xla`, so that code written for
            `keras.layers.LSTM` runs unchanged. Give one of the two, or the
            same value to both.
        implementation: Accepted, as `keras.layers.LSTM` accepts it, and
            ignored: there is one implementation.

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
            to the first call of the cell (optional, zeros if not given),
            or `[h, c, step]`, as `get_initial_state()` gives them, where
            `step`, a `(batch, 1)` tensor like the others (its first entry
            is taken), is the time-step index the sequences start at, 0 by
            default. The statistics are per time step: to continue a
            sequence (chunked inference, step-by-step decoding), give the
            steps it has run so far, and the continuation computes what
            one pass over the whole sequence would.

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

    Continuing a sequence, here one step at a time, as a decoder does:

    >>> h, c = final_h, final_c
    >>> for t in range(10, 13):
    ...     step = keras.ops.full((32, 1), t)
    ...     state = [h, c, step]
    ...     step_output, h, c = bnlstm(inputs[:, :1], initial_state=state)

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
        input_statistics="step",
        statistics_sample=512,
        synchronized=False,
        return_sequences=False,
        return_state=False,
        go_backwards=False,
        stateful=False,
        unroll=False,
        use_xla="auto",
        use_cudnn="auto",
        **kwargs,
    ):
        # Accepted as keras.layers.LSTM accepts it; there is one
        # implementation here.
        self.implementation = kwargs.pop("implementation", 2)
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
            input_statistics=input_statistics,
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
        self.seed = _checks.seed("seed", seed)
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_spec = keras.InputSpec(ndim=3)
        self.statistics_sample = _checks.non_negative_int(
            "statistics_sample", statistics_sample
        )
        self._process = ProcessState(
            ReferenceSample(cell.units) if self.statistics_sample else None
        )
        self._statistics_collector = None
        self.use_xla = self._checked_xla_setting(use_xla, use_cudnn)

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
        if self.batch_quantum is None:
            # The first training batch size, which the compiled loops pad
            # batches up to multiples of (see `_batch_bucket`); learnt
            # again by each process.
            self._process.batch_quantum = state_variable(
                (), "batch_quantum", "int32"
            )
        sample = self.reference_sample
        if sample is not None and not sample.built:
            # A stateful layer keeps its last batch: the sequences of one
            # batch share their time-step offset.
            size = sequences_shape[0] if self.stateful else None
            sample.build((
                size or self.statistics_sample,
                self.cell.max_timesteps,
                sequences_shape[-1],
            ))

    @property
    def reference_sample(self):
        """The `ReferenceSample` of the latest training sequences, or
        `None` with `statistics_sample=0`."""
        return self._process.sample

    @property
    def batch_quantum(self):
        """The int32 variable of the first training batch size (0 before
        any training), or `None` before the layer is built."""
        return self._process.batch_quantum

    @property
    def variables(self):
        # JAX's compiled steps carry in and out exactly the model's
        # variables: there the process state must be among them to be
        # updated by `fit()`. On TensorFlow and PyTorch, variables are
        # updated in place, and the state stays out, so that a
        # checkpoint, PyTorch's parameters or an export never hold the
        # sample. An export reads `variables` first: the statistics are
        # re-estimated then, and the sample stays out of it on JAX too.
        variables = super().variables
        if _loop.exporting():
            self.refresh_statistics()
        elif keras.backend.backend() == "jax":
            variables += self._process.variables()
        return variables

    @property
    def weights(self):
        # What is read as the weights (`get_weights()`, `summary()`, a
        # stateful twin's `set_weights()`) holds statistics that match
        # the weights, as inference would use them. Not inside PyTorch's
        # training step, which reads the weights after every batch.
        if not _loop.training_step():
            self.refresh_statistics()
        return super().weights

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
            h0, c0, offset = self._given_state(initial_state)
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

    @staticmethod
    def _given_state(initial_state):
        """`(h0, c0, offset)` from a call's `initial_state`: `[h, c]`, or
        `[h, c, step]` as `get_initial_state()` and a stateful layer's
        `states` give them, where `step` is the time-step index the
        sequences start at (shared by the batch: its first entry)."""
        states = keras.tree.flatten(initial_state)
        if len(states) not in (2, 3):
            raise ValueError(
                "Received an invalid value for argument `initial_state`, "
                "expected a list of 2 tensors [h, c] or 3 [h, c, step], "
                f"got {len(states)}"
            )
        if len(states) == 2:
            return (*states, 0)
        step = ops.reshape(ops.convert_to_tensor(states[2]), (-1,))[0]
        return states[0], states[1], ops.cast(step, "int32")

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
        # Batch moments in training, unless the layer is frozen: then, as
        # Keras' BatchNormalization does, the population statistics. While
        # `recompute_statistics` collects, batch moments without dropout.
        collector = self._statistics_collector
        training = bool(training)
        batch_norm = (training and self.trainable) or collector is not None
        # Under a strategy, a nested function cannot update the
        # statistics: replicated variables need a merge_call there.
        if (batch_norm or not self._on_xla() or _loop.recording()
                or _loop.stateless() or _replicas.under_strategy()):
            return self._sequence_pass(sequences, initial_state, mask,
                                       training, batch_norm)
        return self._traced_inference(sequences, initial_state, mask)

    def _sequence_pass(self, sequences, initial_state, mask, training,
                       batch_norm):
        """`inner_loop`, once it knows whether to normalize with batch
        moments."""
        h0, c0, offset = initial_state
        x, alignment = self._processing_order(sequences, mask)
        weights = None if alignment is None else alignment.weights
        collector = self._statistics_collector
        statistics = None
        if batch_norm and collector is None:
            warn_if_one_sequence(x)
            self._remember(x, weights, h0, c0, offset)
        elif not batch_norm and not _loop.exporting():
            # An export was refreshed before it traced (see `variables`)
            # and never trains: it reads no sample.
            statistics = self._current_statistics()
        final, outputs, moments = self._recurrence(
            x, weights, initial_state, batch_norm, statistics,
            self._dropout_masks(training, x), self.return_sequences,
        )
        if batch_norm:
            steps, counts, batch_stats = moments
            if collector is not None:
                collector(steps, counts, batch_stats)
            else:
                self._update_statistics(steps, counts, batch_stats)
        return self._outputs(final, outputs, alignment)

    def save_own_variables(self, store):
        # Before the cell saves the statistics: a saved model predicts as
        # the live one does. The layer has no weights of its own.
        super().save_own_variables(store)
        self.refresh_statistics()

    def get_config(self):
        config = self.cell.get_config()
        for key in ("name", "trainable", "dtype"):
            config.pop(key, None)
        config.update(
            {
                "dropout": self.dropout,
                "recurrent_dropout": self.recurrent_dropout,
                "seed": self.seed,
                "statistics_sample": self.statistics_sample,
                "use_xla": self.use_xla,
                "implementation": self.implementation,
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
    "input_statistics synchronized"
).split():
    setattr(BNLSTM, _name, _cell_property(_name))
del _name
