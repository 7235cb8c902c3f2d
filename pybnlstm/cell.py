"""One time step of the recurrent batch-normalized LSTM."""

import numbers
import warnings

import keras
from keras import ops

from pybnlstm import _checks
from pybnlstm import step as bn_lstm_step
from pybnlstm.batch_norm import batch_moments, batch_normalizer, projected_moments


def _initializer(value):
    """A Keras initializer; a bare number means a constant."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return keras.initializers.Constant(float(value))
    return keras.initializers.get(value)


@keras.saving.register_keras_serializable(package="pybnlstm")
class BNLSTMCell(keras.layers.Layer):
    """Cell class for the recurrent batch-normalized LSTM layer.

    One step of the LSTM of Cooijmans et al. (2016), with the input and
    recurrent contributions batch-normalized separately and the cell state
    normalized before the output activation:

    ```
    z   = BN(x_t W; gamma_x) + BN(h_{t-1} U; gamma_h) + b    # gates i, f, g, o
    c_t = sig(f) * c_{t-1} + sig(i) * act(g)
    h_t = sig(o) * act(BN(c_t; gamma_c, beta_c))
    ```

    `BN` uses the batch moments in training and per-time-step population
    statistics in inference; steps past `max_timesteps - 1` use the last
    stored row. The cell carries three states: `h`, `c` and the time-step
    index (a `(batch, 1)` float tensor) that selects the row.

    This class processes one step. The layer `pybnlstm.BNLSTM` processes a
    whole sequence, applies dropout, and maintains the population
    statistics; use it unless you need the cell itself. Inside a generic
    `keras.layers.RNN` the cell normalizes with batch moments in training
    but cannot update its population statistics (an RNN's step must be
    pure on every backend), so train with `BNLSTM`.

    Args:
        units: Positive integer, dimensionality of the output space.
        activation: Activation function to use. Default: hyperbolic tangent
            (`tanh`).
        recurrent_activation: Activation function for the gates. Default:
            sigmoid (`sigmoid`).
        use_bias: Boolean (default `True`), whether the cell uses a bias
            vector (the only shift of the two gate normalizations).
        kernel_initializer: Initializer for the `kernel` weights matrix.
            Default: `"glorot_uniform"`.
        recurrent_initializer: Initializer for the `recurrent_kernel`
            weights matrix. Default: `"orthogonal"`.
        bias_initializer: Initializer for the bias vector. Default:
            `"zeros"`.
        unit_forget_bias: Boolean (default `True`). If `True`, add 1 to the
            bias of the forget gate at initialization.
        gamma_initializer: Initializer for `gamma_x`, `gamma_h` and
            `gamma_c`, or a number for a constant. Default: `0.1`, the value
            the paper found necessary (1.0 saturates the activation and
            makes gradients vanish over time).
        beta_initializer: Initializer for `beta_c`. Default: `"zeros"`.
        kernel_regularizer: Regularizer function applied to the `kernel`
            weights matrix. Default: `None`.
        recurrent_regularizer: Regularizer function applied to the
            `recurrent_kernel` weights matrix. Default: `None`.
        bias_regularizer: Regularizer function applied to the bias vector.
            Default: `None`.
        kernel_constraint: Constraint function applied to the `kernel`
            weights matrix. Default: `None`.
        recurrent_constraint: Constraint function applied to the
            `recurrent_kernel` weights matrix. Default: `None`.
        bias_constraint: Constraint function applied to the bias vector.
            Default: `None`.
        max_timesteps: Positive integer, the number of time steps that keep
            their own population statistics. Required to build the cell;
            `BNLSTM` fills it in from its input's length.
        momentum: Momentum of the debiased moving averages of the
            population statistics, in [0, 1] (1 keeps a running mean).
            Default: `0.5`; see `BNLSTM`.
        epsilon: Small positive float added to the variance. Default:
            `1e-3`.
        input_statistics: `"step"` (default) or `"sequence"`: whether the
            input term `x_t W` is normalized with statistics of its own
            time step, or with statistics shared by all time steps (the
            paper's option for sequences of varied length). The recurrent
            and cell terms keep per-step statistics either way. With
            `"sequence"`, row 0 of `moving_mean_x` and
            `moving_variance_x` holds the shared statistics, and a bare
            cell cannot train (it sees one step at a time).
        synchronized: Boolean (default `False`). If `True`, the batch
            moments span every replica of the current `tf.distribute`
            strategy, so that N replicas of batch B normalize as one batch
            of N * B. TensorFlow backend only.
        **kwargs: Base layer keyword arguments, such as `dtype` and `name`.

    Call arguments:
        inputs: A 2D tensor, with shape `(batch, features)`.
        states: A list of 3 tensors `[h, c, step]`, shapes `(batch, units)`,
            `(batch, units)` and `(batch, 1)`.
        training: Python boolean indicating whether the layer should behave
            in training mode (batch moments) or in inference mode
            (population statistics).

    Example:

    >>> inputs = np.random.random((32, 10, 8))
    >>> rnn = keras.layers.RNN(pybnlstm.BNLSTMCell(4, max_timesteps=10))
    >>> output = rnn(inputs)
    >>> output.shape
    (32, 4)

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
        kernel_constraint=None,
        recurrent_constraint=None,
        bias_constraint=None,
        max_timesteps=None,
        momentum=0.5,
        epsilon=1e-3,
        input_statistics="step",
        synchronized=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = _checks.positive_int("units", units)
        self.max_timesteps = _checks.positive_int(
            "max_timesteps", max_timesteps, allow_none=True
        )
        self.momentum = _checks.fraction("momentum", momentum, True)
        self.epsilon = _checks.positive_real("epsilon", epsilon)
        self.input_statistics = _checks.choice(
            "input_statistics", input_statistics, ("step", "sequence")
        )
        self.synchronized = _checks.synchronized(synchronized)
        self.activation = keras.activations.get(activation)
        self.recurrent_activation = keras.activations.get(recurrent_activation)
        self.use_bias = bool(use_bias)
        self.unit_forget_bias = bool(unit_forget_bias)
        self.kernel_initializer = _initializer(kernel_initializer)
        self.recurrent_initializer = _initializer(recurrent_initializer)
        self.bias_initializer = _initializer(bias_initializer)
        self.gamma_initializer = _initializer(gamma_initializer)
        self.beta_initializer = _initializer(beta_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.recurrent_regularizer = keras.regularizers.get(
            recurrent_regularizer
        )
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.recurrent_constraint = keras.constraints.get(recurrent_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.state_size = [self.units, self.units, 1]
        self.output_size = self.units
        self._warned_no_statistics = False

    def build(self, input_shape):
        input_dim = input_shape[-1]
        if input_dim is None:
            raise ValueError(
                "The last dimension of the input to a BNLSTMCell must be "
                f"known. Received: input_shape={input_shape}"
            )
        if self.max_timesteps is None:
            raise ValueError(
                "Received no value for argument `max_timesteps`, expected a "
                "positive integer: the number of time steps that keep their "
                "own population statistics. The layer `BNLSTM` sets it from "
                "its input's length; a bare cell needs it given."
            )
        width = 4 * self.units
        self.kernel = self.add_weight(
            shape=(input_dim, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.recurrent_kernel = self.add_weight(
            shape=(self.units, width),
            name="recurrent_kernel",
            initializer=self.recurrent_initializer,
            regularizer=self.recurrent_regularizer,
            constraint=self.recurrent_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(width,),
                name="bias",
                initializer=self._bias_init,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )
        else:
            self.bias = None
        self.gamma_x = self.add_weight(
            shape=(width,), name="gamma_x", initializer=self.gamma_initializer
        )
        self.gamma_h = self.add_weight(
            shape=(width,), name="gamma_h", initializer=self.gamma_initializer
        )
        self.gamma_c = self.add_weight(
            shape=(self.units,),
            name="gamma_c",
            initializer=self.gamma_initializer,
        )
        self.beta_c = self.add_weight(
            shape=(self.units,),
            name="beta_c",
            initializer=self.beta_initializer,
        )
        for part, size in (("x", width), ("h", width), ("c", self.units)):
            for stat, init in (("mean", "zeros"), ("variance", "ones")):
                name = f"moving_{stat}_{part}"
                setattr(
                    self,
                    name,
                    self.add_weight(
                        shape=(self.max_timesteps, size),
                        name=name,
                        initializer=init,
                        trainable=False,
                        autocast=False,
                    ),
                )

        self.moving_count = self.add_weight(
            shape=(self.max_timesteps,),
            name="moving_count",
            initializer="zeros",
            trainable=False,
            autocast=False,
        )

    def _bias_init(self, shape, dtype=None):
        if not self.unit_forget_bias:
            return self.bias_initializer(shape, dtype=dtype)
        u = self.units
        return ops.concatenate(
            [
                self.bias_initializer((u,), dtype=dtype),
                ops.ones((u,), dtype=dtype),
                self.bias_initializer((2 * u,), dtype=dtype),
            ]
        )

    @property
    def statistics(self):
        """The population statistics as `{(part, stat): variable}`, with
        `part` in `x`, `h`, `c` and `stat` in `mean`, `variance`."""
        return {
            (part, stat): getattr(self, f"moving_{stat}_{part}")
            for part in ("x", "h", "c")
            for stat in ("mean", "variance")
        }

    def affine(self, mean, variance, gamma, beta=None):
        """Folds a normalization into `x * scale + shift`, in float32.

        `mean` and `variance` are float32 and may carry leading axes (time
        steps or samples) in front of the feature axis.
        """
        scale = ops.cast(gamma, "float32") * ops.rsqrt(variance + self.epsilon)
        shift = -mean * scale
        if beta is not None:
            shift = shift + ops.cast(beta, "float32")
        return scale, shift

    def _gate_shift(self, shift):
        """`shift` plus the bias, once per sequence rather than per step."""
        if self.use_bias:
            shift = shift + ops.cast(self.bias, "float32")
        return shift

    def input_moments(self, x, weights=None, synchronized=None):
        """The batch moments of the input projection `x W` of each step.

        Args:
            x: `(batch, timesteps, features)` inputs.
            weights: optional `(batch, timesteps, 1)` 0/1 weights.
            synchronized: whether the moments span every replica; default
                the cell's setting.

        Returns:
            `(mean, variance)`, float32, each `(timesteps, 4 * units)`:
            per step, or with `input_statistics="sequence"` pooled over
            every (unmasked) step and repeated for each.
        """
        if synchronized is None:
            synchronized = self.synchronized
        if self.input_statistics == "step":
            return projected_moments(x, self.kernel, weights, synchronized)
        features = ops.shape(x)[-1]
        flat_weights = None
        if weights is not None:
            flat_weights = ops.reshape(weights, (-1, 1))
        pooled = projected_moments(
            ops.reshape(x, (-1, features)), self.kernel, flat_weights,
            synchronized,
        )
        repeat = ops.ones((ops.shape(x)[1], 1), dtype="float32")
        return tuple(repeat * m[None] for m in pooled)

    def batch_statistics(self, x_moments, moments):
        """A training pass's per-step batch moments by statistic.

        Args:
            x_moments: `(mean, variance)` from `input_moments`.
            moments: the recurrence's per-step moments, `(timesteps,
                10 * units)`: `[mean_h, var_h, mean_c, var_c]`.

        Returns:
            `{(part, stat): (timesteps, features)}`, keyed like
            `statistics`.
        """
        width = 4 * self.units
        h_mean, h_variance, c_mean, c_variance = ops.split(
            moments, [width, 2 * width, 2 * width + self.units], axis=-1
        )
        return {
            ("x", "mean"): x_moments[0],
            ("x", "variance"): x_moments[1],
            ("h", "mean"): h_mean,
            ("h", "variance"): h_variance,
            ("c", "mean"): c_mean,
            ("c", "variance"): c_variance,
        }

    def batch_normalization(self, x_moments):
        """The training-mode per-step inputs of `recurrence()`'s step.

        Args:
            x_moments: `(mean, variance)` of the input projection `x W`,
                float32, from `projected_moments`.

        Returns:
            `{"x_scale", "shift"}`, float32: the scale of `x W`, and the
            gates' shift (the input projection's shift plus the bias).
        """
        scale, shift = self.affine(*x_moments, self.gamma_x)
        return {"x_scale": scale, "shift": self._gate_shift(shift)}

    def population_normalization(self, rows, statistics=None):
        """The inference-mode per-step inputs of `recurrence()`'s step, from
        the given rows of the population statistics.

        Args:
            rows: int32 tensor of row indices, already within
                `[0, max_timesteps)`.
            statistics: `{(part, stat): value}` to read the rows from;
                default the cell's `statistics`.

        Returns:
            `{"x_scale", "h_scale", "shift", "c_scale", "c_shift"}`, in
            compute dtype, each shaped `rows.shape + (features,)`; `shift`
            holds the gates' three shifts (input, recurrent, bias) in one.
        """

        if statistics is None:
            statistics = self.statistics

        def fold(part, gamma, beta=None):
            # Shared input statistics live in row 0.
            at = rows * 0 if (
                part == "x" and self.input_statistics == "sequence"
            ) else rows
            return self.affine(
                ops.take(statistics[(part, "mean")], at, axis=0),
                ops.take(statistics[(part, "variance")], at, axis=0),
                gamma,
                beta,
            )

        x_scale, x_shift = fold("x", self.gamma_x)
        h_scale, h_shift = fold("h", self.gamma_h)
        c_scale, c_shift = fold("c", self.gamma_c, self.beta_c)
        norm = {
            "x_scale": x_scale,
            "h_scale": h_scale,
            "shift": self._gate_shift(x_shift + h_shift),
            "c_scale": c_scale,
            "c_shift": c_shift,
        }
        return {k: ops.cast(v, self.compute_dtype) for k, v in norm.items()}

    def recurrence(self, synchronized=None):
        """The step (`pybnlstm.step`) as a pure function of its inputs.

        The weights are read once, here, so that the function can run inside
        a symbolic loop (and XLA) without touching variables.

        Args:
            synchronized: whether batch moments span every replica; default
                the cell's setting.

        Returns:
            `step(x, h_prev, c_prev, norm, weights=None) -> (h, c,
            moments)`, where `x` is the input of shape `(batch, features)`;
            `norm` is one step of `batch_normalization()` in training mode
            or of `population_normalization()` in inference mode; `weights`
            is an optional `(batch, 1)` 0/1 tensor whose zero rows stay out
            of the batch moments; and `moments` is the float32 vector
            `[mean_h, var_h, mean_c, var_c]` (widths `4 * units`, `4 *
            units`, `units`, `units`) in training mode, else `None`.
        """
        # Copies read once: a variable read inside TensorFlow's loop body is
        # read, and kept for the gradient, at every step. Cast: outside a
        # call (a refresh before saving), reads are not autocast.
        kernel, recurrent_kernel = (
            ops.cast(ops.copy(v), self.compute_dtype)
            for v in (self.kernel, self.recurrent_kernel)
        )
        # Tensors, not variables: a custom gradient may not read variables
        # (TensorFlow), and the normalizations work in float32.
        gamma_h = ops.cast(self.gamma_h, "float32")
        gamma_c = ops.cast(self.gamma_c, "float32")
        beta_c = ops.cast(self.beta_c, "float32")
        gate, activation = self.recurrent_activation, self.activation
        if synchronized is None:
            synchronized = self.synchronized
        moments_of, normalize = self._batch_normalizers(synchronized)

        def step(x, h_prev, c_prev, norm, weights=None):
            if "h_scale" in norm:
                h, c = bn_lstm_step.step(
                    x, h_prev, c_prev, kernel, recurrent_kernel,
                    ops.cast(norm["x_scale"], kernel.dtype),
                    *bn_lstm_step.population_normalizers(
                        norm["h_scale"], norm["shift"], norm["c_scale"],
                        norm["c_shift"]),
                    gate, activation,
                )
                return h, c, None
            moments = {}

            def normalize_h(hu):
                moments["h"] = moments_of(hu, weights)
                return normalize(hu, moments["h"], gamma_h, norm["shift"],
                                 weights)

            def normalize_c(c):
                moments["c"] = moments_of(c, weights)
                return normalize(c, moments["c"], gamma_c, beta_c, weights)

            h, c = bn_lstm_step.step(
                x, h_prev, c_prev, kernel, recurrent_kernel,
                ops.cast(norm["x_scale"], kernel.dtype), normalize_h,
                normalize_c, gate, activation,
            )
            # One vector, so that a loop stores one tensor per step.
            return h, c, ops.concatenate(moments["h"][:2] + moments["c"][:2])

        return step

    def _batch_normalizers(self, synchronized):
        """`(moments_of, normalize)` for a training step's in-loop
        normalizations: `moments_of(v, weights)` gives `batch_moments`,
        and `normalize(v, moments, gamma, beta, weights)` applies them,
        with the gradient written out unless the moments span replicas."""
        written_out = {
            masked: batch_normalizer(self.epsilon, masked)
            for masked in (False, True)
        }

        def moments_of(v, weights):
            moments = batch_moments(v, weights, synchronized)
            if synchronized:
                return moments
            # Without a gradient: `normalize` holds the terms through them.
            return tuple(ops.stop_gradient(m) for m in moments)

        def normalize(v, moments, gamma, beta, weights):
            mean, variance, centred = moments
            if synchronized:
                # Autodiff, which carries the all-reduces back as well.
                scale, shift = self.affine(mean, variance, gamma, beta)
                return ops.cast(v * scale + shift, v.dtype)
            if weights is None:
                return written_out[False](v, centred, variance, gamma, beta)
            return written_out[True](
                v, centred, variance, gamma, beta, weights
            )

        return moments_of, normalize

    def call(self, inputs, states, training=False):
        h_prev, c_prev, step = states
        if training:
            if self.input_statistics == "sequence":
                raise ValueError(
                    "A BNLSTMCell with input_statistics='sequence' cannot "
                    "train on its own: it sees one time step at a time. "
                    "Train with the layer `pybnlstm.BNLSTM`."
                )
            self._warn_no_statistics()
            norm = self.batch_normalization(
                projected_moments(inputs, self.kernel, None, self.synchronized)
            )
        else:
            rows = ops.clip(
                ops.cast(step[:, 0], "int32"), 0, self.max_timesteps - 1
            )
            norm = self.population_normalization(rows)
        h, c, _ = self.recurrence()(inputs, h_prev, c_prev, norm)
        return h, [h, c, step + 1]

    def _warn_no_statistics(self):
        if not self._warned_no_statistics:
            self._warned_no_statistics = True
            warnings.warn(
                "BNLSTMCell normalizes with batch moments in training but "
                "does not update its population statistics on its own; "
                "train with the layer `pybnlstm.BNLSTM`, which does.",
                stacklevel=3,
            )

    def get_initial_state(self, batch_size=None):
        # Three distinct tensors: on PyTorch a stateful layer's state
        # variables would otherwise share one buffer.
        return [
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
            ops.zeros((batch_size, self.units), dtype=self.compute_dtype),
            ops.zeros((batch_size, 1), dtype=self.compute_dtype),
        ]

    def get_config(self):
        ser = keras.saving.serialize_keras_object
        config = {
            "units": self.units,
            "activation": keras.activations.serialize(self.activation),
            "recurrent_activation": keras.activations.serialize(
                self.recurrent_activation
            ),
            "use_bias": self.use_bias,
            "kernel_initializer": ser(self.kernel_initializer),
            "recurrent_initializer": ser(self.recurrent_initializer),
            "bias_initializer": ser(self.bias_initializer),
            "unit_forget_bias": self.unit_forget_bias,
            "gamma_initializer": ser(self.gamma_initializer),
            "beta_initializer": ser(self.beta_initializer),
            "kernel_regularizer": ser(self.kernel_regularizer),
            "recurrent_regularizer": ser(self.recurrent_regularizer),
            "bias_regularizer": ser(self.bias_regularizer),
            "kernel_constraint": ser(self.kernel_constraint),
            "recurrent_constraint": ser(self.recurrent_constraint),
            "bias_constraint": ser(self.bias_constraint),
            "max_timesteps": self.max_timesteps,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "input_statistics": self.input_statistics,
            "synchronized": self.synchronized,
        }
        return {**super().get_config(), **config}
