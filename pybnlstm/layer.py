"""The recurrent batch-normalized LSTM layer: the sequence loop and the
population statistics."""

import itertools
import warnings

import keras
from keras import ops

from pybnlstm import _checks, _loop, _replicas
from pybnlstm.cell import BNLSTMCell
from pybnlstm.sample import ReferenceSample, state_variable
from pybnlstm.statistics import batch_replacement, moving_average_update


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
        if seed is not None and not isinstance(seed, int):
            raise TypeError(
                "Received an invalid value for argument `seed`, expected an "
                f"integer or None, got {seed!r}"
            )
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.input_spec = keras.InputSpec(ndim=3)
        self.statistics_sample = _checks.non_negative_int(
            "statistics_sample", statistics_sample
        )
        self._process = _ProcessState(
            ReferenceSample(cell.units) if self.statistics_sample else None
        )
        self._statistics_collector = None
        for name, value in (("use_xla", use_xla), ("use_cudnn", use_cudnn)):
            if not (value == "auto" or isinstance(value, bool)):
                raise ValueError(
                    f"Received an invalid value for argument `{name}`, "
                    f"expected 'auto', True or False, got {value!r}"
                )
        if "auto" not in (use_xla, use_cudnn) and use_xla != use_cudnn:
            raise ValueError(
                f"Received use_xla={use_xla} and use_cudnn={use_cudnn}; "
                "`use_cudnn` is another name for `use_xla` here, so give "
                "one of them, or the same value to both."
            )
        self.use_xla = use_xla
        self.use_cudnn = use_cudnn
        unavailable = self._xla_unavailable()
        if self._xla_setting() is True and unavailable:
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
        if (batch_norm or not self._fused() or _loop.recording()
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
            _warn_if_one_sequence(x)
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

    def _traced_inference(self, sequences, initial_state, mask):
        """`_sequence_pass` at inference on the compiled path, through one
        `tf.function` per layer and kind of input, traced once for any
        batch size: each function Keras traces (validation, `predict()`
        and its last partial batch) then holds one call to it instead of
        the pass's few hundred ops, which took a third of a second per
        layer and trace to build, and more to optimize."""
        import tensorflow as tf

        h0, c0, offset = initial_state
        offset = tf.convert_to_tensor(offset, tf.int32)
        arguments = (sequences, h0, c0, offset, mask)
        # Any batch size: the leading axis is left open.
        specs = tuple(None if a is None else tf.TensorSpec(
            (None,) * min(a.shape.rank, 1) + tuple(a.shape[1:]), a.dtype)
            for a in arguments)
        function = self._process.inference_functions.get(specs)
        if function is None:

            def inference(sequences, h0, c0, offset, mask):
                return self._sequence_pass(
                    sequences, (h0, c0, offset), mask, False, False
                )

            function = tf.function(inference, autograph=False)
            function = function.get_concrete_function(*specs)
            self._process.inference_functions[specs] = function
        last_output, outputs, final = function(*arguments)
        rows, length = sequences.shape[:2]
        last_output.set_shape((rows, self.cell.units))
        for state in final:
            state.set_shape((rows, self.cell.units))
        if outputs is not None:
            outputs.set_shape((rows, length, self.cell.units))
        return last_output, outputs, final

    def _processing_order(self, sequences, mask):
        """The inputs in the compute dtype, steps in the order they are
        processed: reversed with `go_backwards`, and, with a mask, each
        sequence's real steps first (see `_Alignment`)."""
        x = ops.cast(sequences, self.compute_dtype)
        if self.go_backwards:
            x = ops.flip(x, axis=1)
            mask = None if mask is None else ops.flip(mask, axis=1)
        if mask is None:
            return x, None
        alignment = _Alignment(mask, x.dtype)
        return alignment.gather(x), alignment

    def _dropout_masks(self, training, x):
        """`(input_mask, recurrent_mask)` for a training call, `None` where
        there is no dropout."""
        batch_size = ops.shape(x)[0]
        input_mask = recurrent_mask = None
        if training and self.dropout > 0:
            input_mask = self._dropout_mask((batch_size, x.shape[-1]))
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self._dropout_mask(
                (batch_size, self.cell.units), self.recurrent_dropout
            )
        return input_mask, recurrent_mask

    def _recurrence(self, x, weights, initial_state, batch_norm, statistics,
                    dropout_masks, return_sequences, synchronized=None,
                    differentiated=None):
        """The recurrence over steps in processing order.

        Args:
            x: `(batch, timesteps, features)`, compute dtype.
            weights: `(batch, timesteps, 1)` 0/1 weights, or `None`.
            initial_state: `(h0, c0, offset)`.
            batch_norm: normalize with batch moments (else population
                statistics).
            statistics: the population statistics to use, as
                `{(part, stat): value}`, or `None` for the layer's.
            dropout_masks: `(input_mask, recurrent_mask)`.
            return_sequences: whether to keep every step's output.
            synchronized: whether batch moments span the replicas; default
                the cell's setting.
            differentiated: whether a gradient may be taken; default
                `batch_norm`. Batch moments without a gradient, where
                `_fused` allows, come from a compiled loop that computes
                nothing else (and returns no state).

        Returns:
            `(final, outputs, moments)`: the final `(h, c)`, the
            `(batch, timesteps, units)` outputs or `None`, and with
            `batch_norm` the `(steps, counts, batch_stats)` of
            `_update_statistics`, else `None`.
        """
        cell = self.cell
        if synchronized is None:
            synchronized = cell.synchronized
        h0, c0, offset = initial_state
        input_mask, recurrent_mask = dropout_masks
        if input_mask is not None:
            x = x * input_mask[:, None, :]
        length = ops.shape(x)[1]
        steps = offset + ops.arange(length, dtype="int32")
        if batch_norm:
            x_moments = cell.input_moments(x, weights, synchronized)
            norm = cell.batch_normalization(x_moments)
        else:
            norm = cell.population_normalization(
                ops.clip(steps, 0, cell.max_timesteps - 1), statistics
            )
        xs = {"x": _time_major(x), "norm": _packed(norm)}
        if weights is not None:
            xs["weights"] = _time_major(weights)
        if differentiated is None:
            differentiated = batch_norm

        def step_by_step():
            step = self._step(norm, recurrent_mask, return_sequences,
                              batch_norm, synchronized)
            y_dtypes = ((self.compute_dtype,) if return_sequences else ()) + (
                ("float32",) if batch_norm else ()
            )
            unroll = self._unrolled(x, batch_norm and synchronized)
            return _loop.scan(step, (h0, c0), xs, y_dtypes, unroll,
                              differentiated=differentiated)

        final, history = self._compiled_loop(
            xs, (h0, c0), recurrent_mask, return_sequences, batch_norm,
            differentiated, step_by_step,
        )
        outputs = _time_major(history[0]) if return_sequences else None
        if not batch_norm:
            return final, outputs, None
        if weights is None:
            batch_size = ops.cast(ops.shape(x)[0], "float32")
            counts = ops.ones((length,), dtype="float32") * batch_size
        else:
            counts = ops.sum(ops.cast(weights, "float32"), axis=(0, 2))
        if synchronized:
            counts = _replicas.replica_sum(counts)
        moments = (steps, counts, cell.batch_statistics(x_moments,
                                                        history[-1]))
        return final, outputs, moments

    def _step(self, norm, recurrent_mask, return_sequences, batch_norm,
              synchronized):
        """The loop's step: `(carry, inputs) -> (carry, outputs)`."""
        # One tensor read per step rather than several: each read costs
        # the loop ops, and more when it needs a gradient.
        norm_keys = list(norm)
        norm_ends = list(
            itertools.accumulate(norm[k].shape[-1] for k in norm_keys)
        )
        recurrence = self.cell.recurrence(synchronized)

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
            ys = (h,) if return_sequences else ()
            return (h, c), ys + ((moments,) if batch_norm else ())

        return step

    def _unrolled(self, x, synchronized):
        """Whether the time loop is a Python loop. tf.distribute cannot
        all-reduce inside a tf.while_loop (its merge_call refuses control
        flow), so synchronized statistics across replicas need the loop
        unrolled."""
        unroll = self.unroll or (
            synchronized and _replicas.replicas_in_sync() > 1
        )
        if unroll and x.shape[1] is None:
            raise ValueError(
                "A BNLSTM with synchronized=True needs inputs of a known "
                "length under a tf.distribute strategy, because the time "
                "loop is unrolled there; received input shape "
                f"{tuple(x.shape)}"
            )
        return unroll

    def _outputs(self, final, outputs, alignment):
        """`(last_output, outputs, final)` in Keras' order and masking
        conventions: a masked position repeats the output before it, zero
        before the first real step (or always, with
        `zero_output_for_mask`)."""
        last_output = final[0]
        if alignment is None:
            if self.return_sequences:
                last_output = outputs[:, -1]
            return last_output, outputs, final
        if self.return_sequences:
            outputs = alignment.scatter(outputs)
            if self.zero_output_for_mask:
                outputs = outputs * alignment.mask
            return outputs[:, -1], outputs, final
        last_output = last_output * alignment.any_real
        if self.zero_output_for_mask:
            last_output = last_output * alignment.mask[:, -1]
        return last_output, None, final

    def _update_statistics(self, steps, counts, batch_stats):
        cell = self.cell
        statistics, moving_count = moving_average_update(
            _values(cell.statistics), _value(cell.moving_count),
            cell.momentum, steps, counts, batch_stats,
        )
        for key, variable in cell.statistics.items():
            variable.assign(statistics[key])
        cell.moving_count.assign(moving_count)

    # The reference sample and the refresh of the statistics from it.

    def _remember(self, x, weights, h0, c0, offset):
        """Keeps the batch in the reference sample (see `ReferenceSample`):
        a stateful layer only a batch whose steps reach a row of their
        own. With synchronized statistics, the global batch: every
        replica then refreshes from the same sample, as one device
        would."""
        if self.reference_sample is None:
            return
        keep = True
        if self.stateful:
            keep = offset < self.cell.max_timesteps
        if self.cell.synchronized:
            if weights is None:
                weights = ops.ones_like(x[..., :1])
            x, weights, h0, c0 = (
                _replicas.replica_concat(t) for t in (x, weights, h0, c0)
            )
        self.reference_sample.remember(x, weights, h0, c0, offset, keep)

    def _current_statistics(self):
        """The population statistics for inference: re-estimated from the
        reference sample first if the layer trained since they were last
        (in the traced function, a conditional that costs nothing once
        they are fresh)."""
        sample = self.reference_sample
        if sample is None:
            return None
        refresh = self._refresh_function()

        def refreshed():
            # No gradient flows into the statistics: a tape that recorded
            # the compiled loops would fail ("TensorList crossing the
            # XLA/TF boundary") where it could not differentiate them.
            with _loop.unrecorded():
                return refresh()

        statistics = _loop.cond(
            sample.stale, refreshed, lambda: _values(self.cell.statistics)
        )
        statistics = {k: ops.stop_gradient(v) for k, v in statistics.items()}
        for key, variable in self.cell.statistics.items():
            variable.assign(statistics[key])
        sample.mark_fresh()
        return statistics

    def _refresh_function(self):
        """`_refreshed_statistics`; on the compiled path a `tf.function`
        traced once per layer, so that each traced inference pass (one per
        kind of input, see `_traced_inference`, and step by step under a
        gradient tape) holds one call to it rather than the whole pass
        again: tracing that pass took about a quarter of a second per
        layer and trace."""
        if not self._fused():
            return self._refreshed_statistics
        if self._process.traced_refresh is None:
            import tensorflow as tf

            self._process.traced_refresh = tf.function(
                self._refreshed_statistics, autograph=False
            )
        return self._process.traced_refresh

    def _refreshed_statistics(self):
        """The population statistics with each row the reference sample
        reaches replaced by its moments under the current weights: one
        pass over the sample as one batch, normalized with its batch
        moments as in training, without dropout or gradient, with batch
        moments of the local replica only. On TensorFlow it runs a
        compiled loop of its own, which XLA compiles once per layer shape
        in a process."""
        x, weights, h0, c0, offset = self.reference_sample.contents()
        _, _, (steps, counts, batch_stats) = self._recurrence(
            ops.cast(x, self.compute_dtype), weights,
            (ops.cast(h0, self.compute_dtype),
             ops.cast(c0, self.compute_dtype), offset),
            batch_norm=True, statistics=None, dropout_masks=(None, None),
            return_sequences=False, synchronized=False, differentiated=False,
        )
        return batch_replacement(
            _values(self.cell.statistics), steps, counts, batch_stats
        )

    @property
    def statistics_stale(self):
        """Whether the layer trained since its population statistics were
        last re-estimated (they are, at its next inference call); `None`
        where that is not known yet (inside a traced function)."""
        sample = self.reference_sample
        if sample is None or not sample.built:
            return False
        if _loop.stateless():
            return None
        return _loop.concrete(sample.stale)

    def refresh_statistics(self):
        """Re-estimates the population statistics from the reference
        sample now, if the layer trained since they last were. Inference
        does this by itself; so do saving, exporting and reading the
        weights. Inside a traced function it does nothing."""
        if self.statistics_stale:
            self._current_statistics()

    def save_own_variables(self, store):
        # Before the cell saves the statistics: a saved model predicts as
        # the live one does. The layer has no weights of its own.
        super().save_own_variables(store)
        self.refresh_statistics()

    def _compiled_loop(self, xs, state, recurrent_mask, return_sequences,
                       batch_norm, differentiated, step_by_step):
        """`(final, history)` from `_tf_fused`'s compiled loops where they
        apply (see `_fused`), else from `step_by_step()`. Inference under a
        gradient tape (a frozen layer in `fit()`) runs step by step:
        TensorFlow cannot differentiate a compiled loop called from an
        uncompiled function."""
        if not self._fused():
            return step_by_step()
        # Imported here: on JAX or PyTorch, TensorFlow need not be installed.
        from pybnlstm import _tf_fused

        if batch_norm and not differentiated:
            # The reference sample keeps its size: nothing to pad.
            return None, (self._fused_statistics(xs, *state, _tf_fused),)
        if not batch_norm and _loop.recording():
            return step_by_step()

        batch = ops.shape(xs["x"])[1]
        bucket, quantum = self._batch_bucket(batch, batch_norm)
        padded = _padded_batch(xs, state, recurrent_mask, bucket,
                               weighted=batch_norm)
        if batch_norm:
            final, history = self._fused_recurrence(
                *padded, return_sequences, _tf_fused
            )
        else:
            final, history = _loop.nonempty(
                xs["x"],
                lambda: self._fused_inference(
                    padded[0], padded[1], return_sequences, quantum,
                    _tf_fused,
                ),
                step_by_step,
            )
        return _batch_rows(final, history, batch, xs["x"].shape[:2])

    def _batch_bucket(self, batch, training):
        """`(bucket, quantum)`: the batch size the compiled loops run at,
        `batch` padded up to a multiple of `quantum`. In training,
        `quantum` is the layer's first training batch size (`batch` itself
        before any training); inference runs in chunks of `quantum` rows,
        that size or the power of two at or above `batch` if smaller. A
        partial last batch and a validation set reuse the loops XLA
        compiled for the training batches: XLA compiles once per input
        shape, and Keras' `fit()` traces its step for a batch of any size.
        A small inference batch (one row, say) pays for its own power of
        two, not for a training batch of a thousand; that is at most one
        compilation per power of two up to the training batch size."""
        batch = ops.cast(batch, "int32")
        quantum = ops.convert_to_tensor(self.batch_quantum)
        quantum = ops.where(quantum > 0, quantum, batch)
        if training:
            self.batch_quantum.assign(quantum)
        else:
            power = ops.cast(
                2.0 ** ops.ceil(ops.log2(ops.cast(batch, "float32"))), "int32"
            )
            quantum = ops.minimum(quantum, ops.maximum(power, 1))
        return (batch + quantum - 1) // quantum * quantum, quantum

    def _fused(self):
        """Whether the recurrence runs XLA-compiled, in `_tf_fused`'s
        loops. Not in an export: the step-by-step loop serves wherever
        TensorFlow runs, TFLite included."""
        return (self._xla_setting() is not False
                and not self._xla_unavailable() and not _loop.exporting())

    def _xla_setting(self):
        """`use_xla`, or `use_cudnn`, its other name, where it is 'auto'."""
        return self.use_cudnn if self.use_xla == "auto" else self.use_xla

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

    def _fused_recurrence(self, xs, initial_state, recurrent_mask,
                          return_sequences, _tf_fused):
        cell = self.cell
        weights = xs.get("weights")
        run = _tf_fused.training_recurrence(
            cell.units,
            cell.epsilon,
            return_sequences,
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
        history = ((outputs,) if return_sequences else ()) + (moments,)
        return (h, c), history

    def _fused_inference(self, xs, initial_state, return_sequences, chunk,
                         _tf_fused):
        cell = self.cell
        run = _tf_fused.inference_recurrence(return_sequences,
                                             "weights" in xs)
        outputs, h, c = _tf_fused.in_chunks(
            run, return_sequences, chunk, xs["x"], xs["norm"],
            *initial_state,
            (ops.copy(cell.kernel), ops.copy(cell.recurrent_kernel)),
            xs.get("weights"),
        )
        return (h, c), ((outputs,) if return_sequences else ())

    def _fused_statistics(self, xs, h0, c0, _tf_fused):
        cell = self.cell
        run = _tf_fused.statistics_recurrence(cell.epsilon, "weights" in xs)
        return run(
            xs["x"], xs["norm"], h0, c0,
            tuple(ops.copy(v) for v in (
                cell.kernel, cell.recurrent_kernel, cell.gamma_h,
                cell.gamma_c, cell.beta_c)),
            xs.get("weights"),
        )

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
                "statistics_sample": self.statistics_sample,
                "use_xla": self.use_xla,
                "use_cudnn": self.use_cudnn,
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


class _ProcessState:
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


def _values(variables):
    """`{key: variable}` as tensors, as `_value` gives them."""
    return {key: _value(v) for key, v in variables.items()}


def _value(variable):
    """A statistics variable as a float32 tensor, whatever its dtype
    (float64 under a float64 policy): the statistics are computed in
    float32. A tensor, not the variable: JAX would capture a variable
    passed to one of its functions as a constant of the compiled step."""
    return ops.cast(ops.convert_to_tensor(variable), "float32")


def _warn_if_one_sequence(x):
    """Warns when a training batch holds one sequence (where its size is
    known when the step is traced): its batch moments are its own values,
    so every normalized term is `beta` (0 for `x W` and `h U`) whatever
    the input, and the layer learns nothing from it. Not an error: the
    last batch of an epoch may hold one sequence."""
    if x.shape[0] == 1:
        warnings.warn(
            "A BNLSTM trains on a batch of one sequence: batch "
            "normalization over one sequence normalizes every term to "
            "zero, so the layer learns nothing from it. Train with "
            "batches of several sequences (batch_size >= 8, say); for "
            "one-step-at-a-time forecasting, train a stateless model and "
            "copy its weights into a stateful twin with set_weights().",
            stacklevel=2,
        )


def _time_major(t):
    return ops.moveaxis(t, 1, 0)


def _padded_batch(xs, state, recurrent_mask, bucket, weighted):
    """The loop's inputs with zero rows appended up to `bucket` rows. With
    `weighted`, the weights (ones where none were given) mark them 0, so
    that they stay out of the batch moments; a training loop then always
    runs its masked variant, which XLA compiles once for full and partial
    batches alike."""
    batch = ops.shape(xs["x"])[1]
    missing = bucket - batch

    def padded(t, value=0.0):
        at = [[0, 0]] * len(t.shape)
        at[-2] = [0, missing]
        return ops.pad(t, at, constant_values=value)

    xs = dict(xs)
    if weighted and "weights" not in xs:
        xs["weights"] = ops.ones_like(xs["x"][..., :1])
    for key in ("x", "weights"):
        if key in xs:
            xs[key] = padded(xs[key])
    state = tuple(padded(s) for s in state)
    if recurrent_mask is not None:
        recurrent_mask = padded(recurrent_mask, 1.0)
    return xs, state, recurrent_mask


def _batch_rows(final, history, batch, static):
    """`final` and `history` without the rows `_padded_batch` added: the
    time-major outputs lose them, the per-step moments have none. They get
    back the static `(timesteps, batch)` of the inputs, which the loops'
    relaxed trace and the slicing lose: a layer after them may need it
    (an unrolled BNLSTM needs its length), and Keras' LSTM keeps it."""
    timesteps, rows = static
    history = tuple(h[:, :batch] if len(h.shape) == 3 else h
                    for h in history)
    final = tuple(s[:batch] for s in final)
    for s in final:
        s.set_shape((rows, s.shape[-1]))
    for h in history:
        if len(h.shape) == 3:
            h.set_shape((timesteps, rows, h.shape[-1]))
    return final, history


def _packed(norm):
    """The per-step normalization inputs as one tensor (see `_step`)."""
    return ops.concatenate(list(norm.values()), axis=-1)


class _Alignment:
    """Each sequence's real (unmasked) steps moved to the front, in order.

    The t-th real step of every sequence then sits at step t and is
    normalized with statistics row t, whatever padding came before it, in
    front, behind or between: a sequence gives the same outputs padded or
    not, and in training the moments of row t pool the t-th real step of
    every sequence that has one. Keras' cuDNN path aligns a backward
    sequence the same way (`tf.reverse_sequence` by length). Masked steps
    keep the state as they always did, so the state is unchanged by the
    move; only the statistics row a step uses is.

    Args:
        mask: `(batch, timesteps)` boolean mask, steps in processing order.
        dtype: the dtype of the weights.
    """

    def __init__(self, mask, dtype):
        real = ops.cast(mask, "int32")
        # Real steps up to and including each position.
        self.real_before = ops.cumsum(real, axis=1)
        length = self.real_before[:, -1:]
        padding_before = ops.cumsum(1 - real, axis=1)
        destination = ops.where(
            mask, self.real_before - 1, length + padding_before - 1
        )
        # The keys are distinct, so any sort gives the one inverse.
        self.source = ops.argsort(destination, axis=1)
        positions = ops.arange(ops.shape(real)[1], dtype="int32")[None]
        self.weights = ops.cast(positions < length, dtype)[..., None]
        self.mask = ops.cast(mask, dtype)[..., None]
        self.any_real = ops.cast(length > 0, dtype)

    def gather(self, x):
        """`x` with each sequence's real steps first."""
        return ops.take_along_axis(x, self.source[..., None], axis=1)

    def scatter(self, outputs):
        """Outputs of aligned steps back at their positions: each position
        gets the output of the last real step at or before it, or zeros
        before the first."""
        padded = ops.pad(outputs, [[0, 0], [1, 0], [0, 0]])
        return ops.take_along_axis(
            padded, self.real_before[..., None], axis=1
        )


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
