"""The batch-normalized recurrence over a whole sequence as XLA-compiled
loops, for TensorFlow: sigmoid gates, tanh activation, float32. Training
runs two, forward and backward; re-estimating population statistics runs
a third, forward only; inference a fourth.

TensorFlow's executor pays a fixed cost per op, and a batch-normalized step
has about twice the ops of a plain LSTM's: on a CPU that, not the matrix
products, is what it cost over the LSTM. XLA fuses a step's element-wise
ops into a few kernels, but it cannot differentiate a loop without
stacking and copying what each step saved. So the forward loop saves
what the backward pass needs, and the backward loop is the LSTM's and the
normalizations' gradient written out; each loop is compiled whole.
Keras restricts its cuDNN kernel to the default activations likewise.

Each loop is one `tf.function`, made once per configuration, called with
every tensor it reads as an argument, and traced once for inputs of any
size (`_relaxed`): XLA then compiles it once per input shape in a
process, whichever traced function calls it.
"""

import functools

import tensorflow as tf

from pybnlstm import step as bn_lstm_step
from pybnlstm.batch_norm import batch_moments, normalization_backward

# What a forward step saves for the backward one, besides h and c. The
# gates and the cell's normalization are recomputed from these: that costs
# an input projection per step, which is small next to the recurrent one,
# and halves what the whole sequence holds in memory.
_SAVED = ("n_h", "inv_h", "inv_c", "moments")


def _moments_and_normalized(v, weights, epsilon):
    mean, variance, centred = batch_moments(v, weights)
    inv = tf.math.rsqrt(variance + epsilon)
    return mean, variance, inv, centred * inv


def _step(x, row, h_prev, c_prev, weights, epsilon):
    """One training-mode step (`pybnlstm.step`), normalized with the
    batch's own moments.

    Args:
        x: the step's input, `(batch, features)`.
        row: the step's packed `[x_scale, shift]` and, if masked, its
            `(batch, 1)` weights, as `_step_rows` gives them.
        h_prev, c_prev: the state, `h_prev` after recurrent dropout.
        weights: `(kernel, recurrent_kernel, gamma_h, gamma_c, beta_c)`.
        epsilon: the normalizations' epsilon.

    Returns:
        `(h, c, values)`: the new state, before masking, and what the
        backward loop reads: `n_h`, `inv_h`, `inv_c` and the step's
        `moments`, `[mean_h, var_h, mean_c, var_c]`.
    """
    kernel, recurrent_kernel, gamma_h, gamma_c, beta_c = weights
    x_scale, shift = tf.split(row[0], 2)
    w = row[1] if len(row) > 1 else None
    values, moments = {}, {}

    def normalize_h(hu):
        mean, variance, values["inv_h"], values["n_h"] = (
            _moments_and_normalized(hu, w, epsilon))
        moments["h"] = [mean, variance]
        return values["n_h"] * gamma_h + shift

    def normalize_c(c):
        mean, variance, values["inv_c"], n_c = _moments_and_normalized(
            c, w, epsilon)
        moments["c"] = [mean, variance]
        return n_c * gamma_c + beta_c

    h, c = bn_lstm_step.step(x, h_prev, c_prev, kernel, recurrent_kernel,
                             x_scale, normalize_h, normalize_c, tf.sigmoid,
                             tf.tanh)
    values["moments"] = tf.concat(moments["h"] + moments["c"], 0)
    return h, c, values


def _step_rows(*per_step):
    """`rows(t)`: step t's rows of each time-major tensor given (`None`s
    left out), clamped to the last step. Each loop passes them in its
    carry, read by the step before: read by index, they would be fused
    into the step's element-wise work, which XLA then runs much slower
    (see `_loop`). At five shapes the training step's ratio to the LSTM's
    fell by 0.10 to 0.18, and a compiled predict ran 1.7 times faster;
    the backward loop gained nothing measurable from the same."""
    per_step = [a for a in per_step if a is not None]
    last = tf.shape(per_step[0])[0] - 1

    def rows(t):
        t = tf.minimum(t, last)
        return [a[t] for a in per_step]

    return rows


def _two_features_at_least(x, kernel):
    """`x` and `kernel` with a zero feature added where there is one: XLA
    turns a product over one feature into an element-wise multiply, which
    it fuses with the step's other work, and a univariate training step
    then took twice as long (99 ms against 44 at batch 256, 50 steps, 64
    units). The zero feature adds nothing to `x W` and gets no gradient
    that reaches the caller."""
    if x.shape[-1] != 1:
        return x, kernel
    return (tf.concat([x, tf.zeros_like(x)], -1),
            tf.concat([kernel, tf.zeros_like(kernel)], 0))


def _masked(keep, new, old):
    return new if keep is None else tf.where(keep > 0, new, old)


def _relaxed(function, weights_at):
    """`function`, called through its one trace for inputs of any length
    and batch size: every axis but the last may have any size, except in
    the weights (argument `weights_at`), which keep their shapes. XLA
    compiles a `jit_compile` function once per trace and input shape:
    called with static shapes from one traced function and with an unknown
    batch size from another (Keras traces a partial batch so), it would
    compile twice for the same shape."""

    def spec(value, relaxed=True):
        if value is None:
            return None
        shape = list(value.shape)
        if relaxed:
            shape = [None] * (len(shape) - 1) + shape[-1:]
        return tf.TensorSpec(shape, value.dtype)

    def call(*args):
        specs = [
            tf.nest.map_structure(
                lambda v, i=i: spec(v, i != weights_at), a)
            for i, a in enumerate(args)
        ]
        return function.get_concrete_function(*specs)(*args)

    return call


@functools.lru_cache(maxsize=None)
def _forward(epsilon, masked, dropped):
    """The forward training loop: `(x, norm, h0, c0, weights, sample
    weights, recurrent_mask) -> (h, c, saved)`."""

    @tf.function(jit_compile=True, autograph=False)
    def forward(x, norm, h0, c0, weights, sample_weights, recurrent_mask):
        length = tf.shape(x)[0]
        rows = _step_rows(norm, sample_weights if masked else None)

        def body(t, h_prev, c_prev, saved, row):
            hp = h_prev * recurrent_mask if dropped else h_prev
            h, c, values = _step(x[t], row, hp, c_prev, weights, epsilon)
            w = row[1] if masked else None
            values["h"] = h = _masked(w, h, h_prev)
            values["c"] = c = _masked(w, c, c_prev)
            # h and c go one row down: step t reads h_{t-1} and c_{t-1} at t.
            saved = {
                k: a.write(t + 1 if k in ("h", "c") else t, values[k])
                for k, a in saved.items()
            }
            return t + 1, h, c, saved, rows(t + 1)

        saved = {k: tf.TensorArray(tf.float32, size=length) for k in _SAVED}
        for k, initial in (("h", h0), ("c", c0)):
            saved[k] = tf.TensorArray(tf.float32, size=length + 1).write(
                0, initial
            )
        _, h, c, saved = tf.while_loop(
            lambda t, *_: t < length,
            body,
            (tf.constant(0), h0, c0, saved, rows(0)),
            maximum_iterations=length,
        )[:4]
        return h, c, {k: a.stack() for k, a in saved.items()}

    return _relaxed(forward, weights_at=4)


@functools.lru_cache(maxsize=None)
def statistics_recurrence(epsilon, masked):
    """The training-mode recurrence without dropout or gradient, for its
    per-step batch moments only: `run(x, norm, h0, c0, (kernel,
    recurrent_kernel, gamma_h, gamma_c, beta_c), weights) -> moments`,
    arguments as for `training_recurrence`, `moments` the per-step
    `[mean_h, var_h, mean_c, var_c]`. It saves nothing per step, so it
    holds a sequence's memory once, not per step."""

    @tf.function(jit_compile=True, autograph=False)
    def run(x, norm, h0, c0, weights, sample_weights=None):
        length = tf.shape(x)[0]
        rows = _step_rows(norm, sample_weights if masked else None)

        def body(t, h_prev, c_prev, moments, row):
            h, c, values = _step(x[t], row, h_prev, c_prev, weights, epsilon)
            w = row[1] if masked else None
            moments = moments.write(t, values["moments"])
            return (t + 1, _masked(w, h, h_prev), _masked(w, c, c_prev),
                    moments, rows(t + 1))

        moments = tf.while_loop(
            lambda t, *_: t < length,
            body,
            (tf.constant(0), h0, c0, tf.TensorArray(tf.float32, size=length),
             rows(0)),
            maximum_iterations=length,
        )[3]
        return moments.stack()

    relaxed = _relaxed(run, weights_at=4)

    def widened(x, norm, h0, c0, weights, sample_weights=None):
        x, kernel = _two_features_at_least(x, weights[0])
        return relaxed(x, norm, h0, c0, (kernel,) + tuple(weights[1:]),
                       sample_weights)

    return widened


@functools.lru_cache(maxsize=None)
def inference_recurrence(return_sequences, masked):
    """The inference-mode recurrence, with population statistics:
    `run(x, norm, h0, c0, (kernel, recurrent_kernel), weights) ->
    (outputs, h, c)`. `x` is time-major; `norm` the `(timesteps, 14
    units)` packing of `BNLSTMCell.population_normalization` (`x_scale`,
    `h_scale`, `shift`, `c_scale`, `c_shift`); `weights` the time-major
    0/1 mask or `None`; `outputs` the time-major `h` of every step with
    `return_sequences`, else `None`. The sequence needs at least one step.
    Each step's input comes in the carry with its rows (`_step_rows`)."""

    @tf.function(jit_compile=True, autograph=False)
    def run(x, norm, h0, c0, kernels, weights=None):
        kernel, recurrent_kernel = kernels
        units = h0.shape[-1]
        length = tf.shape(x)[0]
        rows = _step_rows(x, norm, weights if masked else None)

        def body(t, h_prev, c_prev, outputs, row):
            x_scale, *normalization = tf.split(
                row[1], [4 * units, 4 * units, 4 * units, units, units])
            h, c = bn_lstm_step.step(
                row[0], h_prev, c_prev, kernel, recurrent_kernel, x_scale,
                *bn_lstm_step.population_normalizers(*normalization),
                tf.sigmoid, tf.tanh,
            )
            w = row[2] if masked else None
            h, c = _masked(w, h, h_prev), _masked(w, c, c_prev)
            if return_sequences:
                outputs = outputs.write(t, h)
            return t + 1, h, c, outputs, rows(t + 1)

        _, h, c, outputs, _ = tf.while_loop(
            lambda t, *_: t < length,
            body,
            (tf.constant(0), h0, c0,
             tf.TensorArray(h0.dtype, size=length if return_sequences else 0),
             rows(0)),
            maximum_iterations=length,
        )
        return (outputs.stack() if return_sequences else None), h, c

    return _relaxed(run, weights_at=4)


def in_chunks(run, return_sequences, chunk, x, norm, h0, c0, kernels,
              weights=None):
    """An inference loop `run` (`inference_recurrence`'s) over consecutive
    chunks of `chunk` rows of the batch, which is a multiple of `chunk`:
    the rows of an inference batch are independent, and a loop run at one
    batch size compiles once."""
    count = tf.shape(x)[1] // chunk

    def split(t, axis):
        shape = tf.shape(t)
        t = tf.reshape(t, tf.concat(
            [shape[:axis], [count, chunk], shape[axis + 1:]], 0))
        return tf.experimental.numpy.moveaxis(t, axis, 0)

    def merge(t, axis):
        t = tf.experimental.numpy.moveaxis(t, 0, axis)
        shape = tf.shape(t)
        return tf.reshape(
            t, tf.concat([shape[:axis], [-1], shape[axis + 2:]], 0))

    masked = weights is not None
    chunks = (split(x, 1), split(h0, 0), split(c0, 0))
    if masked:
        chunks += (split(weights, 1),)

    def one(part):
        outputs, h, c = run(part[0], norm, part[1], part[2], kernels,
                            part[3] if masked else None)
        return (h, c) if outputs is None else (h, c, outputs)

    results = tf.map_fn(one, chunks, fn_output_signature=(
        (tf.float32,) * (3 if return_sequences else 2)))
    h, c = merge(results[0], 0), merge(results[1], 0)
    outputs = merge(results[2], 1) if return_sequences else None
    return outputs, h, c


def _gate_gradients(dh, dc, x_t, x_scale, shift, c_prev, saved_t, weights,
                    w, n):
    """One backward step through the gates and both normalizations, the
    gates recomputed from what the forward step saved.

    Args:
        dh, dc: the gradients reaching the step's `h` and `c`, already
            zero in masked rows.
        x_t: the step's input.
        x_scale, shift: the step's input scale and gate shift.
        c_prev: the cell state before the step.
        saved_t: the step's `(n_h, inv_h, inv_c, mean_c)`.
        weights: `(kernel, recurrent_kernel, gamma_h, gamma_c, beta_c)`.
        w, n: the step's `(batch, 1)` 0/1 weights, or `None`, and the
            count of rows in its moments.

    Returns:
        `(dz, d_hu, d_c, f, sums)`: the gradients of the gates' input
        `x W + BN(h U)` and of `h U`, of `c` (before the forget gate
        carries it back) and the forget gate; `sums` the step's batch
        sums `[sum dz, sum dz n_h, sum dc_hat, sum dc_hat n_c]`.
    """
    kernel, _, gamma_h, gamma_c, beta_c = weights
    n_h, inv_h, inv_c, mean_c = saved_t
    i, f, g, o = bn_lstm_step.gates(
        bn_lstm_step.input_term(x_t, kernel, x_scale), n_h * gamma_h + shift,
        tf.sigmoid, tf.tanh,
    )
    n_c = (f * c_prev + i * g - mean_c) * inv_c
    tc = tf.tanh(n_c * gamma_c + beta_c)
    d_c_hat = dh * o * (1.0 - tc * tc)
    d_c, sum_c, proj_c = normalization_backward(
        d_c_hat, n_c, gamma_c, inv_c, w, n
    )
    d_c = d_c + dc
    dz = tf.concat([
        d_c * g * i * (1.0 - i),
        d_c * c_prev * f * (1.0 - f),
        d_c * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
    ], -1)
    d_hu, sum_z, proj_z = normalization_backward(
        dz, n_h, gamma_h, inv_h, w, n
    )
    return dz, d_hu, d_c, f, [sum_z, proj_z, sum_c, proj_c]


@functools.lru_cache(maxsize=None)
def _backward(units, epsilon, return_sequences, masked, dropped):
    """The backward training loop: the written-out gradient of the forward
    loop's, from what it saved."""
    width = 4 * units

    @tf.function(jit_compile=True, autograph=False)
    def backward(x, norm, saved, weights, sample_weights, recurrent_mask,
                 d_outputs, dh, dc):
        kernel, recurrent_kernel = weights[:2]
        length = tf.shape(x)[0]
        count = tf.cast(tf.shape(x)[1], tf.float32)

        def body(k, dh, dc, d_kernel, d_recurrent, dxs, sums):
            t = length - 1 - k
            if return_sequences:
                dh = dh + d_outputs[t]
            x_t, h_prev, c_prev = x[t], saved["h"][t], saved["c"][t]
            saved_t = tuple(saved[key][t] for key in _SAVED[:3]) + (
                saved["moments"][t][2 * width:2 * width + units],)
            w, n = None, count
            dh_new, dc_new = dh, dc
            if masked:
                w = sample_weights[t]
                n = tf.maximum(tf.reduce_sum(w), 1.0)
                dh_new, dc_new = dh * w, dc * w
            x_scale, shift = tf.split(norm[t], 2)
            dz, d_hu, d_c, f, step_sums = _gate_gradients(
                dh_new, dc_new, x_t, x_scale, shift, c_prev, saved_t, weights,
                w, n,
            )
            d_h_prev = tf.matmul(d_hu, recurrent_kernel, transpose_b=True)
            hp = h_prev
            if dropped:
                hp = h_prev * recurrent_mask
                d_h_prev = d_h_prev * recurrent_mask
            d_c_prev = d_c * f
            if masked:
                d_h_prev = d_h_prev + dh * (1.0 - w)
                d_c_prev = d_c_prev + dc * (1.0 - w)
            x_grad = tf.matmul(x_t, dz, transpose_a=True)
            dxs = dxs.write(
                t, tf.matmul(dz, kernel * x_scale, transpose_b=True)
            )
            sums = sums.write(t, tf.concat(
                [tf.reduce_sum(x_grad * kernel, 0)] + step_sums, 0
            ))
            d_kernel = d_kernel + x_grad * x_scale
            d_recurrent = d_recurrent + tf.matmul(hp, d_hu, transpose_a=True)
            return k + 1, d_h_prev, d_c_prev, d_kernel, d_recurrent, dxs, sums

        _, dh0, dc0, d_kernel, d_recurrent, dxs, sums = tf.while_loop(
            lambda k, *_: k < length,
            body,
            (
                tf.constant(0), dh, dc, tf.zeros_like(kernel),
                tf.zeros_like(recurrent_kernel),
                tf.TensorArray(x.dtype, size=length),
                tf.TensorArray(tf.float32, size=length),
            ),
            maximum_iterations=length,
        )
        d_scale, d_shift, proj_z, sum_c, proj_c = tf.split(
            sums.stack(), [width, width, width, units, units], -1
        )
        return (
            dxs.stack(),
            tf.concat([d_scale, d_shift], -1),
            dh0,
            dc0,
            d_kernel,
            d_recurrent,
            tf.reduce_sum(proj_z, 0),
            tf.reduce_sum(proj_c, 0),
            tf.reduce_sum(sum_c, 0),
        )

    return _relaxed(backward, weights_at=3)


@functools.lru_cache(maxsize=None)
def training_recurrence(units, epsilon, return_sequences, masked, dropped):
    """The training recurrence, compiled once per shape of its inputs.

    Args:
        units: the cell's units.
        epsilon: the normalizations' epsilon.
        return_sequences: whether `h` of every step is returned.
        masked: whether a mask is given.
        dropped: whether a recurrent dropout mask is given.

    Returns:
        `run(x, norm, h0, c0, kernel, recurrent_kernel, gamma_h, gamma_c,
        beta_c, weights, recurrent_mask) -> (outputs, h, c, moments)`:
        `x` is time-major `(timesteps, batch, features)`; `norm` the
        `(timesteps, 8 units)` packing of `BNLSTMCell.batch_normalization`
        (`x_scale`, then `shift`); `weights` the time-major
        `(timesteps, batch, 1)` 0/1 mask, or `None`; `recurrent_mask` the
        `(batch, units)` recurrent dropout mask, or `None`. `outputs` is the
        time-major `h` of every step with `return_sequences`, else `None`;
        `moments` the per-step `[mean_h, var_h, mean_c, var_c]`, without a
        gradient. The gradient flows to every input but the two masks.
    """
    forward = _forward(epsilon, masked, dropped)
    backward = _backward(units, epsilon, return_sequences, masked, dropped)

    def run(x, norm, h0, c0, kernel, recurrent_kernel, gamma_h, gamma_c,
            beta_c, weights, recurrent_mask):
        # Unwatched, like the arguments below: the weights are made from
        # the inputs when a partial batch is padded.
        masks = tuple(None if m is None else tf.stop_gradient(m)
                      for m in (weights, recurrent_mask))
        x, kernel = _two_features_at_least(x, kernel)

        @tf.custom_gradient
        def compiled_pass(*args):
            # Unwatched copies: a tape that watched a compiled function's
            # inputs would ask it for its intermediates.
            args = [tf.stop_gradient(a) for a in args]
            h, c, saved = forward(*args[:4], tuple(args[4:]), *masks)
            results = (h, c, saved["moments"])
            if return_sequences:
                results = (saved["h"][1:],) + results

            def grad(*upstream, variables=None):
                del variables
                d_outputs = upstream[0] if return_sequences else None
                dh, dc = upstream[-3:-1]
                dh = tf.zeros_like(h) if dh is None else dh
                dc = tf.zeros_like(c) if dc is None else dc
                upstream = [
                    None if a is None else tf.stop_gradient(a)
                    for a in (d_outputs, dh, dc)
                ]
                return backward(
                    args[0], args[1], saved, tuple(args[4:]), *masks,
                    *upstream,
                )

            return results, grad

        results = compiled_pass(x, norm, h0, c0, kernel, recurrent_kernel, gamma_h,
                        gamma_c, beta_c)
        return tuple(results) if return_sequences else (None, *results)

    return run
