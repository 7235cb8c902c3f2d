"""Population statistics: debiased averages and exact re-estimation."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, assert_equal, built_layer, to_np
from reference import reference_for, weights_of

import pybnlstm


@pytest.mark.parametrize("momentum", [0.0, 0.5, 0.99, 1.0])
def test_debiased_update_matches_reference(rng, momentum):
    layer = built_layer(momentum=momentum)
    layer.cell.moving_count.assign(np.zeros(5))
    ref = reference_for(layer)
    for scale in (1.0, 3.0, 0.5):
        x = (rng.normal(size=(6, 5, 3)) * scale).astype("float32")
        layer(x, training=True)
        ref.run(x, training=True)
    for key, value in weights_of(layer).items():
        assert_close(value, ref.w[key], **TOL)
    assert_equal(layer.cell.moving_count.numpy(), [3.0] * 5)


def test_first_update_takes_the_batch_statistic(rng):
    layer = built_layer(momentum=0.99)
    layer.cell.moving_count.assign(np.zeros(5))
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    layer(x, training=True)
    wx = x @ layer.cell.kernel.numpy()
    assert_close(layer.cell.moving_mean_x.numpy(), wx.mean(axis=0), **TOL)
    assert_close(layer.cell.moving_variance_x.numpy(), wx.var(axis=0),
                 **TOL)


def test_rows_never_updated_copy_the_last_updated_row(rng):
    layer = pybnlstm.BNLSTM(4, max_timesteps=6)
    layer.build((None, None, 3))
    x = rng.normal(size=(5, 3, 3)).astype("float32")
    mask = np.ones((5, 3), bool)
    mask[:, 1] = False  # no sequence has a third real step
    layer(x, mask=mask, training=True)
    cell = layer.cell
    assert_equal(cell.moving_count.numpy(), [1, 1, 0, 0, 0, 0])
    for variable in cell.statistics.values():
        value = variable.numpy()
        for row in (2, 3, 4, 5):
            assert_equal(value[row], value[1])
        assert not np.array_equal(value[1], value[0])


def _reference_average(layer, batches):
    """Each step's training-mode batch moments (computed by the reference
    with the layer's weights), pooled over the batches in NumPy: weighted
    mean of the means, and weighted mean of variance plus squared mean,
    less the squared pooled mean."""
    logs = []
    for x in batches:
        ref = reference_for(layer)
        ref.w["moving_count"][:] = 0
        ref.momentum = 0.0  # each row then holds this batch's moments
        ref.run(x, training=True)
        logs.append({k: v.copy() for k, v in ref.w.items()
                     if k.startswith("moving_") and k != "moving_count"})
    sizes = np.array([len(x) for x in batches], dtype="float64")
    weights = sizes / sizes.sum()
    pooled = {}
    for part in ("x", "h", "c"):
        means = np.array([log[f"moving_mean_{part}"] for log in logs])
        variances = np.array([log[f"moving_variance_{part}"] for log in logs])
        mean = np.tensordot(weights, means, axes=1)
        pooled[f"moving_mean_{part}"] = mean
        pooled[f"moving_variance_{part}"] = (
            np.tensordot(weights, variances + means**2, axes=1) - mean**2)
    return pooled


def test_recompute_equals_numpy_average(rng):
    x = rng.normal(size=(10, 5, 3)).astype("float32")
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4),
                              keras.layers.Dense(2)])
    layer = model.layers[0]
    before = weights_of(layer)
    trainable = [to_np(w) for w in model.trainable_weights]
    changes = pybnlstm.recompute_statistics(model, x, batch_size=4,
                                            verbose=0, shuffle=False)
    want = _reference_average(layer, [x[:4], x[4:8], x[8:]])
    got = weights_of(layer)
    for key, value in want.items():
        assert_close(got[key], value, **TOL)
    assert_equal(got["moving_count"], [3.0] * 5)
    for w, value in zip(model.trainable_weights, trainable):
        assert_equal(w, value)
    report = changes[layer.path]
    assert report["batches"] == 3 and report["rows"] == 5
    assert report["max_change"]["moving_variance_x"] == pytest.approx(
        np.abs(got["moving_variance_x"] - before["moving_variance_x"]).max())


def test_recompute_input_statistics_ignore_the_order_of_the_data(rng):
    """Sorted data, as windows cut in date order are: each batch covers a
    narrow range, yet the pooled x statistics are those of all samples."""
    x = np.sort(rng.normal(size=(24, 5, 3)), axis=0).astype("float32")
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4)])
    layer = model.layers[0]
    pybnlstm.recompute_statistics(model, x, batch_size=4, verbose=0)
    projected = x.astype("float64") @ to_np(layer.cell.kernel).astype("float64")
    assert_close(layer.cell.moving_mean_x, projected.mean(axis=0), **TOL)
    assert_close(layer.cell.moving_variance_x, projected.var(axis=0), **TOL)
    shuffled = x[rng.permutation(len(x))]
    pybnlstm.recompute_statistics(model, shuffled, batch_size=4, verbose=0)
    assert_close(layer.cell.moving_variance_x, projected.var(axis=0), **TOL)


def test_recompute_shuffles_array_batches_by_default(rng):
    """Batches of sorted data would each be narrow; by default they are
    drawn in the fixed random order of SHUFFLE_SEED."""
    x = np.sort(rng.normal(size=(12, 5, 3)), axis=0).astype("float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4)])
    layer = model.layers[0]
    order = np.random.default_rng(pybnlstm.recompute.SHUFFLE_SEED).permutation(12)
    pybnlstm.recompute_statistics(model, x, batch_size=4, verbose=0)
    shuffled = weights_of(layer)
    want = _reference_average(layer, [x[order[i:i + 4]] for i in (0, 4, 8)])
    for key, value in want.items():
        assert_close(shuffled[key], value, **TOL)
    pybnlstm.recompute_statistics(model, x, batch_size=4, verbose=0,
                                  shuffle=False)
    in_order = weights_of(layer)
    assert not np.allclose(in_order["moving_variance_h"],
                           shuffled["moving_variance_h"], rtol=1e-3)


def test_recompute_accepts_arrays_tuples_datasets_and_generators(rng):
    import tensorflow as tf

    x = rng.normal(size=(8, 5, 3)).astype("float32")
    y = rng.normal(size=(8, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4),
                              keras.layers.Dense(1)])
    layer = model.layers[0]
    results = []
    sources = [
        lambda: dict(data=x, batch_size=4, shuffle=False),
        lambda: dict(data=(x, y), batch_size=4, shuffle=False),
        lambda: dict(data=tf.data.Dataset.from_tensor_slices((x, y)).batch(4)),
        lambda: dict(data=(x[i:i + 4] for i in (0, 4))),
        lambda: dict(data=[(x[:4], y[:4]), (x[4:], y[4:]), (x, y)], steps=2),
    ]
    for source in sources:
        pybnlstm.recompute_statistics(model, verbose=0, **source())
        results.append(weights_of(layer))
    for other in results[1:]:
        for key, value in results[0].items():
            assert_close(other[key], value, rtol=1e-6, atol=1e-7)


def test_recompute_reaches_nested_and_bidirectional_layers(rng):
    x = rng.normal(size=(8, 5, 3)).astype("float32")
    inner = keras.Sequential([keras.Input((5, 3)),
                              pybnlstm.BNLSTM(4, return_sequences=True)])
    outer = keras.Sequential([
        keras.Input((5, 3)), inner,
        keras.layers.Bidirectional(pybnlstm.BNLSTM(3)),
        keras.layers.Dense(1)])
    layers = pybnlstm.recompute.bnlstm_layers(outer)
    assert len(layers) == 3
    changes = pybnlstm.recompute_statistics(outer, x, batch_size=4,
                                            verbose=0)
    assert set(changes) == {layer.path for layer in layers}
    for layer in layers:
        assert_equal(layer.cell.moving_count.numpy(), [2.0] * 5)


def test_recompute_bad_arguments(rng):
    x = rng.normal(size=(4, 5, 3)).astype("float32")
    plain = keras.Sequential([keras.Input((5, 3)), keras.layers.LSTM(2)])
    with pytest.raises(ValueError, match="no BNLSTM"):
        pybnlstm.recompute_statistics(plain, x)
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(2)])
    with pytest.raises(ValueError, match="`batch_size`"):
        pybnlstm.recompute_statistics(model, x, batch_size=0)
    with pytest.raises(ValueError, match="`steps`"):
        pybnlstm.recompute_statistics(model, x, steps=-1)
    with pytest.raises(ValueError, match="no batch"):
        pybnlstm.recompute_statistics(model, iter([]))
    with pytest.raises(ValueError, match="not built"):
        pybnlstm.recompute_statistics(pybnlstm.BNLSTM(2), x)


def test_callback_recomputes_before_validation_and_at_the_end(rng):
    x = rng.normal(size=(12, 5, 3)).astype("float32")
    y = rng.normal(size=(12, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    history = model.fit(
        x[:8], y[:8], validation_data=(x[8:], y[8:]), epochs=2,
        batch_size=4, verbose=0,
        callbacks=[pybnlstm.RecomputeStatistics(x[:8], batch_size=4,
                                                shuffle=False)])
    layer = model.layers[0]
    want = _reference_average(layer, [x[:4], x[4:8]])
    for key, value in want.items():
        assert_close(weights_of(layer)[key], value, **TOL)
    # The last validation ran on statistics of the final weights.
    assert history.history["val_loss"][-1] == pytest.approx(
        model.evaluate(x[8:], y[8:], verbose=0), rel=1e-5)


def _digits(n):
    from sklearn.datasets import load_digits

    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))[:n]
    x = (digits.data[order] / 16.0).astype("float32")[:, :, None]
    return x, digits.target[order]


def _training_mode_accuracy(model, x, y, batch_size):
    hits = [to_np(model(x[i:i + batch_size], training=True)).argmax(1)
            == y[i:i + batch_size] for i in range(0, len(x), batch_size)]
    return np.concatenate(hits).mean()


def test_inference_matches_training_mode_after_one_and_three_epochs():
    """Sequential 8x8 digits, one pixel per step: after fit(), predict() is
    as accurate as the training-mode forward pass, not at chance."""
    x, y = _digits(768)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((64, 1)), pybnlstm.BNLSTM(32),
        keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(3e-3),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    callback = pybnlstm.RecomputeStatistics(x, batch_size=64,
                                            before_validation=False)
    for epochs in (1, 2):  # after 1, then 3 epochs in all
        model.fit(x, y, batch_size=64, epochs=epochs, verbose=0,
                  callbacks=[callback])
        _, inference = model.evaluate(x, y, batch_size=64, verbose=0)
        training = _training_mode_accuracy(model, x, y, 64)
        assert training > 0.25
        assert abs(inference - training) < 0.05, (inference, training)
