"""The layer against the independent NumPy reference (tests/reference.py)."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, assert_equal, built_layer, randomize, to_np
from reference import reference_for, weights_of

import pybnlstm


def run_both(layer, x, training, **ref_kwargs):
    ref = reference_for(layer)
    got = layer(x, training=training)
    want = ref.run(x, training=training, **ref_kwargs)
    return got, want, ref


@pytest.mark.parametrize("training", [True, False])
def test_matches_reference(rng, training):
    layer = built_layer(return_sequences=True, return_state=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    (out, h, c), (r_out, r_h, r_c), _ = run_both(layer, x, training)
    assert_close(out, r_out, **TOL)
    assert_close(h, r_h, **TOL)
    assert_close(c, r_c, **TOL)


def test_moving_statistics_update_matches_reference(rng):
    layer = built_layer(momentum=0.8)
    x1 = rng.normal(size=(6, 5, 3)).astype("float32")
    x2 = rng.normal(size=(6, 5, 3)).astype("float32") * 2 + 1
    ref = reference_for(layer)
    for x in (x1, x2):
        layer(x, training=True)
        ref.run(x, training=True)
    got = weights_of(layer)
    for name in ("x", "h", "c"):
        for stat in ("mean", "variance"):
            key = f"moving_{stat}_{name}"
            assert_close(got[key], ref.w[key], **TOL)
    # The trainable weights are not touched by a forward pass.
    assert_equal(got["kernel"], ref.w["kernel"])


def test_inference_past_max_timesteps_reuses_last_row(rng):
    layer = built_layer(input_shape=(6, 5, 3), return_sequences=True)
    assert layer.max_timesteps == 5
    x = rng.normal(size=(6, 9, 3)).astype("float32")
    got, (want, _, _), _ = run_both(layer, x, training=False)
    assert_close(got, want, **TOL)
    # Rows differ, so using row 4 for steps 5..8 is observable: with row 0
    # instead, the outputs past step 4 would change.
    moved = built_layer(input_shape=(6, 5, 3), return_sequences=True)
    for v in moved.cell.statistics.values():
        v.assign(np.repeat(v.numpy()[:1], 5, axis=0))
    assert not np.allclose(to_np(moved(x))[:, 5:], to_np(got)[:, 5:],
                       atol=1e-4)


def test_training_past_max_timesteps_updates_stored_rows_only(rng):
    layer = built_layer(input_shape=(6, 3, 3), return_sequences=True)
    x = rng.normal(size=(6, 7, 3)).astype("float32")
    got, (want, _, _), ref = run_both(layer, x, training=True)
    assert_close(got, want, **TOL)
    for key, value in weights_of(layer).items():
        assert_close(value, ref.w[key], **TOL)


def test_pinned_values():
    """Hard-coded numbers guard the reference itself against drift."""
    layer = pybnlstm.BNLSTM(2, kernel_initializer="ones",
                            recurrent_initializer="ones",
                            return_sequences=True)
    x = np.array([[[1.0], [2.0], [0.5]],
                  [[-1.0], [0.0], [3.0]]], dtype="float32")
    train = layer(x, training=True)
    infer = layer(x, training=False)
    # Step 0 checked by hand: wx = +-1 normalizes to +-0.09995, the zero
    # state contributes nothing, c = (0.052297, -0.047323), and
    # h = sig(0.09995) * tanh(0.1 * 0.049810 / sqrt(0.002481 + 1e-3)).
    assert_close(
        train,
        [[[0.044214, 0.044214], [0.053148, 0.053148], [0.047136, 0.047136]],
         [[-0.040009, -0.040009], [-0.043795, -0.043795],
          [-0.047367, -0.047367]]],
        atol=2e-6)
    # Batch moments of x W: means 0, 1, 1.75 and variances 1, 1, 1.5625.
    # The first (debiased) update takes them as they are.
    assert_close(layer.cell.moving_mean_x.numpy()[:, 0], [0.0, 1.0, 1.75],
                 atol=1e-7)
    assert_close(layer.cell.moving_variance_x.numpy()[:, 0],
                 [1.0, 1.0, 1.5625], atol=1e-7)
    assert_equal(layer.cell.moving_count.numpy(), [1.0, 1.0, 1.0])
    # So inference on that batch reproduces the training-mode output.
    assert_close(infer[:, -1], [[0.047136, 0.047136], [-0.047367, -0.047367]],
                 atol=2e-6)


@pytest.mark.parametrize(
    "options",
    [
        dict(activation="relu", recurrent_activation="hard_sigmoid"),
        dict(use_bias=False),
    ],
)
@pytest.mark.parametrize("training", [True, False])
def test_options_match_reference(rng, options, training):
    layer = built_layer(return_sequences=True, **options)
    act = keras.activations.get(options.get("activation", "tanh"))
    gate = keras.activations.get(
        options.get("recurrent_activation", "sigmoid"))
    ref = reference_for(
        layer,
        activation=lambda v: np.asarray(act(v.astype("float32")), np.float64),
        recurrent_activation=lambda v: np.asarray(gate(v.astype("float32")),
                                                  np.float64),
    )
    if not options.get("use_bias", True):
        assert "bias" not in ref.w
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    assert_close(layer(x, training=training),
                               ref.run(x, training=training)[0], **TOL)


@pytest.mark.parametrize("training", [True, False])
def test_go_backwards_matches_reference(rng, training):
    layer = built_layer(go_backwards=True, return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    got, (want, _, _), ref = run_both(layer, x, training, go_backwards=True)
    assert_close(got, want, **TOL)
    if training:
        for key, value in weights_of(layer).items():
            assert_close(value, ref.w[key], **TOL)


@pytest.mark.parametrize("training", [True, False])
def test_mask_matches_reference(rng, training):
    layer = built_layer(return_sequences=True, return_state=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    mask = np.ones((6, 5), dtype=bool)
    mask[0, 3:] = False  # post-padded
    mask[1, :2] = False  # pre-padded
    mask[2, 2] = False
    mask[:, 4] = False   # a step masked in every sample
    ref = reference_for(layer)
    out, h, c = layer(x, mask=mask, training=training)
    r_out, r_h, r_c = ref.run(x, training=training, mask=mask)
    assert_close(h, r_h, **TOL)
    assert_close(c, r_c, **TOL)
    assert_close(out, r_out, **TOL)
    if training:
        for key, value in weights_of(layer).items():
            assert_close(value, ref.w[key], **TOL)
    # A masked step's inputs do not matter at all.
    x2 = x.copy()
    x2[~mask] = 1e3
    out2 = layer(x2, mask=mask, training=training)[0]
    assert_close(out2, out, **TOL)


@pytest.mark.parametrize("training", [True, False])
def test_masked_last_output_is_the_final_state(rng, training):
    # Without return_sequences the loop keeps no outputs: the last output
    # is the final state, which a masked last step leaves as it was.
    layer = built_layer()
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    mask = np.ones((6, 5), dtype=bool)
    mask[0, 3:] = False
    mask[1, 4] = False
    _, r_h, _ = reference_for(layer).run(x, training=training, mask=mask)
    assert_close(layer(x, mask=mask, training=training), r_h, **TOL)
    # As in keras.layers.LSTM, zero_output_for_mask zeroes it instead.
    zeroed = built_layer(zero_output_for_mask=True)
    zeroed.set_weights(layer.get_weights())
    out = to_np(zeroed(x, mask=mask, training=False))
    _, r_h, _ = reference_for(zeroed).run(x, training=False, mask=mask)
    assert np.all(out[:2] == 0.0)
    assert_close(out[2:], r_h[2:], **TOL)


def test_initial_state_matches_reference(rng):
    layer = built_layer(return_state=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    h0 = rng.normal(size=(6, 4)).astype("float32")
    c0 = rng.normal(size=(6, 4)).astype("float32")
    ref = reference_for(layer)
    _, h, c = layer(x, initial_state=[h0, c0])
    _, r_h, r_c = ref.run(x, training=False, h0=h0, c0=c0)
    assert_close(h, r_h, **TOL)
    assert_close(c, r_c, **TOL)


@pytest.mark.parametrize("training", [True, False])
def test_unroll_matches_reference(rng, training):
    layer = built_layer(unroll=True, return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    got, (want, _, _), _ = run_both(layer, x, training)
    assert_close(got, want, **TOL)


def test_dropout_masks_are_applied_like_the_reference(rng, monkeypatch):
    layer = built_layer(dropout=0.5, recurrent_dropout=0.3,
                        return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    masks = {
        (6, 3): (rng.random((6, 3)) > 0.5) / 0.5,
        (6, 4): (rng.random((6, 4)) > 0.3) / 0.7,
    }

    def fixed_mask(shape, rate=None):
        return keras.ops.convert_to_tensor(
            masks[tuple(int(s) for s in shape)], "float32")

    monkeypatch.setattr(layer, "_dropout_mask", fixed_mask)
    got, (want, _, _), _ = run_both(
        layer, x, True, input_mask=masks[(6, 3)],
        recurrent_mask=masks[(6, 4)])
    assert_close(got, want, **TOL)


def test_dropout_mask_values(rng):
    layer = pybnlstm.BNLSTM(4, dropout=0.25, seed=3)
    mask = to_np(layer._dropout_mask((400, 50)))
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.75)}
    assert abs((mask == 0).mean() - 0.25) < 0.02


def test_dropout_only_in_training(rng):
    layer = built_layer(dropout=0.5, recurrent_dropout=0.5, seed=1,
                        return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    ref = reference_for(layer)
    assert_close(layer(x), ref.run(x, training=False)[0], **TOL)
    no_dropout = reference_for(layer).run(x, training=True)[0]
    assert not np.allclose(to_np(layer(x, training=True)), no_dropout,
                       atol=1e-3)


def test_cell_in_generic_rnn_matches_reference(rng):
    cell = pybnlstm.BNLSTMCell(4, max_timesteps=3)
    rnn = keras.layers.RNN(cell, return_sequences=True)
    rnn.build((6, 5, 3))
    randomize(rnn)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    before = weights_of(rnn)
    ref = reference_for(rnn)
    assert_close(rnn(x), ref.run(x, training=False)[0], **TOL)
    with pytest.warns(UserWarning, match="population statistics"):
        got = rnn(x, training=True)
    assert_close(got, ref.run(x, training=True)[0], **TOL)
    # A bare cell leaves its statistics alone (documented), although the
    # reference's training run did move them.
    after = weights_of(rnn)
    for key in ("moving_mean_h", "moving_variance_c", "moving_count"):
        assert_equal(after[key], before[key])
        assert not np.array_equal(ref.w[key], before[key])


def test_gamma_defaults_to_a_tenth_and_can_be_overridden():
    layer = pybnlstm.BNLSTM(3)
    layer.build((2, 4, 2))
    for name in ("gamma_x", "gamma_h", "gamma_c"):
        assert_close(getattr(layer.cell, name).numpy(), 0.1)
    assert_close(layer.cell.beta_c.numpy(), 0.0)
    for init in (1.0, keras.initializers.Constant(1.0), "ones"):
        other = pybnlstm.BNLSTM(3, gamma_initializer=init)
        other.build((2, 4, 2))
        assert_close(other.cell.gamma_h.numpy(), 1.0)


def test_unit_forget_bias():
    on = pybnlstm.BNLSTM(3)
    on.build((2, 4, 2))
    assert_equal(on.cell.bias.numpy(),
                                  [0] * 3 + [1] * 3 + [0] * 6)
    off = pybnlstm.BNLSTM(3, unit_forget_bias=False)
    off.build((2, 4, 2))
    assert_equal(off.cell.bias.numpy(), np.zeros(12))


def test_projected_moments_match_the_projection(rng):
    """The input's moments come from its covariance, never from x W: they
    must equal the weighted moments of x W, also where x W is constant
    although its terms are not (the quadratic form must not go negative)."""
    from pybnlstm.batch_norm import projected_moments

    x = rng.normal(size=(9, 4, 3)) * [1.0, 50.0, 1e-3] + [0.0, 20.0, 0.0]
    x[..., 2] = x[..., 0]  # a copy: kernel rows 0 and 2 cancel in column 0
    kernel = rng.normal(size=(3, 5))
    kernel[2, 0] = -kernel[0, 0]
    kernel[1, 0] = 0.0
    weights = (rng.uniform(size=(9, 4, 1)) > 0.3).astype("float64")
    weights[0, 0] = 1.0
    xw = x @ kernel
    n = weights.sum(axis=0)
    mean = (weights * xw).sum(axis=0) / n
    variance = (weights * (xw - mean) ** 2).sum(axis=0) / n
    got_mean, got_variance = projected_moments(
        x.astype("float32"), kernel.astype("float32"),
        weights.astype("float32"))
    assert_close(got_mean, mean, rtol=1e-5, atol=1e-4)
    assert_close(got_variance, variance, rtol=1e-4, atol=1e-3)
    assert (to_np(got_variance)[:, 0] >= 0).all()
    # Unweighted, on one step's (batch, features) as the cell uses it.
    m, v = projected_moments(x[:, 1].astype("float32"),
                             kernel.astype("float32"))
    assert_close(m, xw[:, 1].mean(axis=0), rtol=1e-5, atol=1e-4)
    assert_close(v, xw[:, 1].var(axis=0), rtol=1e-4, atol=1e-3)


def backend_gradients(function, *args):
    """The gradients of the scalar `function(*args)` with respect to each
    argument, by the backend's own autodiff."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        args = [tf.constant(a) for a in args]
        with tf.GradientTape() as tape:
            tape.watch(args)
            value = function(*args)
        return [to_np(g) for g in tape.gradient(value, args)]
    if backend == "jax":
        import jax

        return [np.asarray(g) for g in jax.grad(
            function, argnums=tuple(range(len(args))))(*args)]
    import torch

    args = [torch.tensor(a, requires_grad=True) for a in args]
    function(*args).backward()
    return [a.grad.numpy() for a in args]


@pytest.mark.parametrize("per_step", [True, False])
@pytest.mark.parametrize("masked", [True, False])
def test_projected_moments_gradient(rng, per_step, masked):
    """The written-out gradient of the input's moments against central
    differences of the moments of `x W` itself, in float64."""
    from pybnlstm.batch_norm import projected_moments

    shape = (9, 4, 3) if per_step else (20, 3)
    x = rng.normal(size=shape) + 2.0
    kernel = rng.normal(size=(3, 5))
    weights = None
    if masked:
        weights = (rng.uniform(size=shape[:-1] + (1,)) > 0.3).astype("float64")
        weights[0] = 1.0
    d_mean, d_variance = rng.normal(size=(2,) + shape[1:-1] + (5,))

    def projected(x, kernel):
        xw = x @ kernel
        w = np.ones_like(xw[..., :1]) if weights is None else weights
        n = w.sum(axis=0)
        mean = (w * xw).sum(axis=0) / n
        variance = (w * (xw - mean) ** 2).sum(axis=0) / n
        return (mean * d_mean).sum() + (variance * d_variance).sum()

    def differences(at, other, first):
        grad = np.zeros_like(at)
        for i in np.ndindex(at.shape):
            step = np.zeros_like(at)
            step[i] = 1e-5
            args = [(at + step, other), (at - step, other)]
            if not first:
                args = [(other, a) for a, _ in args]
            grad[i] = (projected(*args[0]) - projected(*args[1])) / 2e-5
        return grad

    def loss(x, kernel):
        w = None if weights is None else keras.ops.convert_to_tensor(
            weights.astype("float32"))
        mean, variance = projected_moments(x, kernel, w)
        directions = [keras.ops.convert_to_tensor(d.astype("float32"))
                      for d in (d_mean, d_variance)]
        return (keras.ops.sum(mean * directions[0])
                + keras.ops.sum(variance * directions[1]))

    d_x, d_kernel = backend_gradients(
        loss, x.astype("float32"), kernel.astype("float32"))
    assert_close(d_x, differences(x, kernel, True), rtol=1e-3, atol=1e-3)
    assert_close(d_kernel, differences(kernel, x, False), rtol=1e-3,
                 atol=1e-3)
