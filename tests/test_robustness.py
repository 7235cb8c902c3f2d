"""Hard inputs: training stays finite, and the trained layer still computes
what the NumPy reference computes from its weights, in training and in
inference; the same seed gives the same model."""

import keras
import numpy as np
import pytest

import pybnlstm
from conftest import assert_equal, to_np
from reference import reference_for


def fitted(x, y, seed=0, batch_size=4, epochs=2, **layer_args):
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input(x.shape[1:]),
        pybnlstm.BNLSTM(6, **layer_args),
        keras.layers.Dense(1),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0)
    return model, history.history["loss"]


def assert_all_finite(model, losses, x):
    assert np.isfinite(losses).all(), losses
    for weight in model.weights:
        assert np.isfinite(to_np(weight)).all(), weight.path
    assert np.isfinite(to_np(model.predict(x, verbose=0))).all()
    assert np.isfinite(to_np(model(x, training=True))).all()
    assert_matches_reference(model, x)


def assert_matches_reference(model, x, rtol=1e-3, atol=1e-4):
    """The model's BNLSTM against the reference on x, with the weights and
    statistics it has: inference first (its statistics re-estimated for the
    trained weights by that very call, so the reference reads them after),
    then training mode on a fresh reference of the same weights. A Masking
    layer's mask (all features zero) goes to both."""
    layer = next(l for l in model.layers if isinstance(l, pybnlstm.BNLSTM))
    mask = np.any(x != 0, axis=-1) if isinstance(
        model.layers[0], keras.layers.Masking) else None
    h = to_np(layer(x, mask=mask))
    _, expected, _ = reference_for(layer).run(x, training=False, mask=mask)
    np.testing.assert_allclose(h, expected, rtol=rtol, atol=atol)
    reference = reference_for(layer)
    h = to_np(layer(x, mask=mask, training=True))
    _, expected, _ = reference.run(x, training=True, mask=mask)
    np.testing.assert_allclose(h, expected, rtol=rtol, atol=atol)


@pytest.fixture
def data(rng):
    x = rng.normal(size=(8, 5, 3)).astype("float32")
    return x, rng.normal(size=(8, 1)).astype("float32")


def test_batch_of_one_trains_as_the_reference(data):
    """One sample has zero batch variance: BN then gives its shift."""
    x, y = data
    model, losses = fitted(x, y, batch_size=1)
    assert_all_finite(model, losses, x)


def test_constant_features_train_as_the_reference(data):
    x, y = data
    x = np.ones_like(x) * 3.0
    model, losses = fitted(x, y)
    assert_all_finite(model, losses, x)


@pytest.mark.parametrize("scale", [1e4, 1e-4])
def test_large_and_small_inputs_train_as_the_reference(data, scale):
    x, y = data
    model, losses = fitted(x * scale, y)
    assert_all_finite(model, losses, x * scale)


def test_large_inputs_are_normalized_away(data):
    """Batch normalization makes the training-mode output blind to the
    input's scale, up to epsilon."""
    x, _ = data
    layer = pybnlstm.BNLSTM(6, epsilon=1e-8)
    small = to_np(layer(x, training=True))
    assert_equal(np.isfinite(small), True)
    np.testing.assert_allclose(to_np(layer(x * 1e4, training=True)), small, rtol=1e-3, atol=1e-5)


def masked_model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.Masking(0.0),
        pybnlstm.BNLSTM(6),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    return model


def test_all_masked_samples_stay_finite_and_exact(data):
    x, y = data
    x = x.copy()
    x[:3] = 0.0  # three samples masked at every step
    x[3, 2:] = 0.0  # and one from step 2 on
    model = masked_model()
    losses = model.fit(x, y, batch_size=4, epochs=2, verbose=0).history["loss"]
    assert_all_finite(model, losses, x)
    # A fully masked sample keeps the initial state: its output is zero.
    hidden = keras.Model(model.inputs, model.layers[1].output)
    assert_equal(to_np(hidden.predict(x[:3], verbose=0)), np.zeros((3, 6)))


def test_a_step_with_every_sample_masked_stays_finite_and_exact(data):
    x, y = data
    x = x.copy()
    x[:, 2] = 0.0  # step 2 is masked in the whole batch
    model = masked_model()
    losses = model.fit(x, y, batch_size=8, epochs=2, verbose=0).history["loss"]
    assert_all_finite(model, losses, x)


def test_same_seed_same_model(data):
    x, y = data
    first, first_losses = fitted(x, y, seed=7, dropout=0.2, recurrent_dropout=0.2)
    second, second_losses = fitted(x, y, seed=7, dropout=0.2, recurrent_dropout=0.2)
    assert first_losses == second_losses
    for a, b in zip(first.weights, second.weights):
        assert_equal(a, b)
    other, other_losses = fitted(x, y, seed=8, dropout=0.2, recurrent_dropout=0.2)
    assert other_losses != first_losses
