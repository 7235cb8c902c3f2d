"""Mixed precision: float16 and bfloat16 compute, float32 weights and
statistics. Outputs are checked against the float64 NumPy reference with
tolerances set by each format's precision."""

import keras
import numpy as np
import pytest

import pybnlstm
from conftest import assert_equal, built_layer, to_np
from reference import reference_for

# Half-precision outputs in [-1, 1]: float16 keeps 11 significant bits,
# bfloat16 8, over 6 recurrent steps.
POLICIES = {"mixed_float16": 1e-2, "mixed_bfloat16": 6e-2}


@pytest.fixture(params=sorted(POLICIES))
def policy(request):
    return request.param


@pytest.mark.parametrize("training", [False, True])
def test_outputs_match_reference(rng, policy, training):
    layer = built_layer(dtype=policy, return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    ref = reference_for(layer)
    expected, _, _ = ref.run(x, training=training)
    out = layer(x, training=training)
    assert keras.backend.standardize_dtype(out.dtype) == policy[6:]
    np.testing.assert_allclose(
        to_np(out).astype("float64"), expected, atol=POLICIES[policy])
    if training:
        for name in ("moving_mean_h", "moving_variance_c"):
            variable = getattr(layer.cell, name)
            assert keras.backend.standardize_dtype(variable.dtype) == (
                "float32")
            np.testing.assert_allclose(
                to_np(variable), ref.w[name], rtol=0.1,
                atol=POLICIES[policy])


def test_statistics_of_large_inputs_do_not_overflow(rng, policy):
    """Projections near 1800, spread by about 350, have variances past
    float16's largest value (65504): the moments are taken in float32, so
    the statistics stay finite and right."""
    layer = built_layer(dtype=policy)
    layer.cell.kernel.assign(np.full((3, 16), 200.0, "float32"))
    x = (3.0 + rng.normal(size=(6, 5, 3))).astype("float32")
    ref = reference_for(layer)
    ref.run(x, training=True)
    out = to_np(layer(x, training=True))
    assert np.isfinite(out).all()
    variance = to_np(layer.cell.moving_variance_x)
    assert np.isfinite(variance).all()
    assert variance.max() > 65504
    # TensorFlow's bfloat16 matmul on CPU moves these variances by about
    # 5%; float16 and the other backends stay within 1%.
    rtol = 0.1 if policy == "mixed_bfloat16" else 2e-2
    np.testing.assert_allclose(variance, ref.w["moving_variance_x"],
                               rtol=rtol)


@pytest.fixture
def global_policy(policy):
    keras.config.set_dtype_policy(policy)
    yield policy
    keras.config.set_dtype_policy("float32")


def test_model_trains_saves_and_reloads(rng, global_policy, tmp_path):
    x = rng.normal(size=(32, 5, 3)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((5, 3)),
        pybnlstm.BNLSTM(8, return_sequences=True),
        pybnlstm.BNLSTM(4),
        keras.layers.Dense(1, dtype="float32"),
    ])
    model.compile(keras.optimizers.Adam(1e-2), "mse")
    losses = model.fit(x, y, batch_size=8, epochs=3, verbose=0)
    losses = losses.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    layer = model.layers[0]
    assert layer.dtype_policy.name == global_policy
    assert layer.cell.compute_dtype == global_policy[6:]
    assert all(
        keras.backend.standardize_dtype(w.dtype) == "float32"
        for w in layer.weights
    )
    prediction = model.predict(x, verbose=0)
    assert np.isfinite(prediction).all()

    path = tmp_path / "mixed.keras"
    model.save(path)
    # The layers' policies come from the file, not from the global one.
    keras.config.set_dtype_policy("float32")
    reloaded = keras.saving.load_model(path, compile=False)
    assert reloaded.layers[0].dtype_policy.name == global_policy
    assert len(model.weights) == len(reloaded.weights)
    for a, b in zip(model.weights, reloaded.weights):
        assert_equal(a, b)
    assert_equal(reloaded.predict(x, verbose=0), prediction)
