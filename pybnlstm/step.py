"""The equations of one BN-LSTM step, written once (Cooijmans et al., 2016,
equations 6 to 8, with Keras' gate order i, f, g, o):

    z   = BN(x W; gamma_x) + BN(h U; gamma_h) + b
    c_t = sig(f) * c_{t-1} + sig(i) * act(g)
    h_t = sig(o) * act(BN(c_t; gamma_c, beta_c))

Every loop runs these: the cell's step (`BNLSTMCell.recurrence`, which the
layer's step-by-step loop and a bare `keras.layers.RNN` run), in training
and in inference, and the XLA-compiled loops of `_xla_loops` (the training
forward, the statistics pass, inference; the written-out backward
recomputes the gates with `gates`). The loops differ only in how the
recurrent and cell terms are normalized, which they pass in: by the
batch's own moments in training, by population statistics in inference.
The input term's normalization is known before the loop, so it comes
folded into a per-unit scale (`x_scale`) and the gate shift, which also
holds `b`.
"""

from keras import ops


def input_term(x, kernel, x_scale):
    """`BN(x W)` without its shift: `x W` scaled per unit, through the
    kernel, so that a step multiplies a `(features, 4 units)` matrix
    rather than a `(batch, 4 units)` one. A per-sample `x_scale` (a bare
    cell in inference: one statistics row per sample) scales the product
    instead."""
    if len(x_scale.shape) == 1:
        return ops.matmul(x, kernel * x_scale)
    return ops.matmul(x, kernel) * x_scale


def gates(input_term, recurrent_term, gate, activation):
    """The gates `i, f, g, o`, activated, from `z = input_term +
    recurrent_term`, the latter the normalized `h U` plus the gate
    shift."""
    i, f, g, o = ops.split(input_term + recurrent_term, 4, axis=-1)
    return gate(i), gate(f), activation(g), gate(o)


def step(x, h_prev, c_prev, kernel, recurrent_kernel, x_scale, normalize_h,
         normalize_c, gate, activation):
    """One step: `(h, c)`.

    Args:
        x: the step's input, `(batch, features)`.
        h_prev, c_prev: the state (`h_prev` after any recurrent dropout).
        kernel, recurrent_kernel: `W` and `U`.
        x_scale: the input term's scale (see `input_term`).
        normalize_h: `h U -> BN(h U; gamma_h) + shift`, the gate shift
            holding the bias and the input term's shift.
        normalize_c: `c -> BN(c; gamma_c, beta_c)`.
        gate, activation: the recurrent activation and the activation.
    """
    i, f, g, o = gates(
        input_term(x, kernel, x_scale),
        normalize_h(ops.matmul(h_prev, recurrent_kernel)),
        gate,
        activation,
    )
    c = f * c_prev + i * g
    return o * activation(normalize_c(c)), c


def population_normalizers(h_scale, shift, c_scale, c_shift):
    """`(normalize_h, normalize_c)` for `step` in inference: each term
    normalized with population statistics, folded into a scale and a
    shift."""
    return (lambda hu: hu * h_scale + shift,
            lambda c: c * c_scale + c_shift)
