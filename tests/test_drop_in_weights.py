"""A trained BNLSTM goes wherever a trained LSTM goes: its parameter count,
`get_weights()`/`set_weights()` between models that differ only in batch
size, `stateful`, `statistics_sample` or `use_xla`, the stateful twin, and
`model.export()` and TFLite on TensorFlow. The reference sample is state
of the process, never a weight: none of these hold training data."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close

import pybnlstm

TIMESTEPS, FEATURES, UNITS = 10, 3, 8


def model_of(layer, batch_size=None):
    model = keras.Sequential([
        keras.Input((TIMESTEPS, FEATURES), batch_size=batch_size), layer,
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    return model


def data(rng, n=48):
    x = rng.normal(size=(n, TIMESTEPS, FEATURES)).astype("float32")
    return x, np.cumsum(x, axis=1)[:, -1, :1]


def trained(rng, **kwargs):
    x, y = data(rng)
    model = model_of(pybnlstm.BNLSTM(UNITS, **kwargs))
    model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    # A last step leaves the statistics stale: reading the weights must
    # re-estimate them, as a prediction would.
    model.train_on_batch(x[:16], y[:16])
    return model, x


def sample_shaped(arrays, layer):
    shapes = {tuple(v.shape) for v in layer.reference_sample.variables}
    return [a.shape for a in arrays if tuple(a.shape) in shapes]


@pytest.mark.parametrize("statistics_sample", [512, 64, 0])
def test_parameter_count_is_the_lstms_plus_the_normalization(
        statistics_sample):
    model = model_of(
        pybnlstm.BNLSTM(UNITS, statistics_sample=statistics_sample))
    lstm = model_of(keras.layers.LSTM(UNITS))
    gates = 4 * UNITS
    # gamma_x and gamma_h (per gate unit), gamma_c and beta_c (per unit),
    # then per time step the mean and variance of x W and h U (per gate
    # unit) and of c (per unit), and each row's count of updates.
    extra = 2 * gates + 2 * UNITS + TIMESTEPS * (4 * gates + 2 * UNITS + 1)
    assert model.count_params() == lstm.count_params() + extra
    layer = model.layers[0]
    assert len(layer.trainable_weights) == 7
    assert len(layer.non_trainable_weights) == 7


def test_get_weights_holds_no_sample_and_the_statistics_inference_uses(rng):
    model, x = trained(rng)
    layer = model.layers[0]
    assert layer.statistics_stale
    weights = model.get_weights()
    assert not layer.statistics_stale
    assert len(weights) == 7 + 7 + 2
    assert not sample_shaped(weights, layer)
    assert not sample_shaped(layer.get_weights(), layer)
    # What get_weights() gave is what predict() uses: a model given them
    # predicts as this one does.
    copy = model_of(pybnlstm.BNLSTM(UNITS))
    copy.set_weights(weights)
    assert_close(copy.predict(x, verbose=0), model.predict(x, verbose=0),
                 **TOL)


@pytest.mark.parametrize("other", [
    {"statistics_sample": 0}, {"statistics_sample": 7}, {"use_xla": False},
    {"use_cudnn": False},
])
def test_models_differing_in_state_settings_exchange_weights(rng, other):
    model, x = trained(rng)
    twin = model_of(pybnlstm.BNLSTM(UNITS, **other))
    twin.set_weights(model.get_weights())
    assert_close(twin.predict(x, verbose=0), model.predict(x, verbose=0),
                 **TOL)
    # And back, after the twin trained a step of its own.
    twin.train_on_batch(x[:16], np.zeros((16, 1)))
    model.set_weights(twin.get_weights())
    assert_close(model.predict(x, verbose=0), twin.predict(x, verbose=0),
                 **TOL)


def predict_window_by_window(stateful, windows):
    outputs = []
    for window in windows:
        stateful.layers[0].reset_state()
        outputs.append(stateful.predict(window[None], verbose=0)[0])
    return np.stack(outputs)


def test_stateful_twin_predicts_each_window_as_the_trained_model(rng):
    model, x = trained(rng)
    twin = model_of(pybnlstm.BNLSTM(UNITS, stateful=True), batch_size=1)
    twin.set_weights(model.get_weights())
    windows = x[:6]
    assert_close(predict_window_by_window(twin, windows),
                 model.predict(windows, verbose=0), **TOL)


def test_stateful_model_hands_its_weights_to_a_stateless_one(rng):
    x, y = data(rng, 32)
    stateful = model_of(pybnlstm.BNLSTM(UNITS, stateful=True), batch_size=4)
    for start in range(0, 32, 4):
        stateful.layers[0].reset_state()
        stateful.train_on_batch(x[start:start + 4], y[start:start + 4])
    assert stateful.layers[0].statistics_stale
    stateless = model_of(pybnlstm.BNLSTM(UNITS))
    stateless.set_weights(stateful.get_weights())
    stateful.layers[0].reset_state()
    assert_close(stateless.predict(x[:4], verbose=0),
                 stateful.predict(x[:4], batch_size=4, verbose=0), **TOL)


def test_summary_counts_the_honest_parameters(rng):
    model, _ = trained(rng)
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    text = "\n".join(lines)
    gates = 4 * UNITS
    # The LSTM's 384 and Dense's 9, the gammas and beta_c; the statistics.
    assert f"Trainable params: {384 + 9 + 2 * gates + 2 * UNITS:,} " in text
    statistics = TIMESTEPS * (4 * gates + 2 * UNITS + 1)
    assert f"Non-trainable params: {statistics:,} " in text


def tensorflow_only():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's SavedModel and TFLite")


def test_export_serves_predictions_and_holds_no_sample(rng, tmp_path):
    if keras.backend.backend() == "torch":
        pytest.skip("a SavedModel from PyTorch needs static shapes")
    import tensorflow as tf

    model, x = trained(rng)
    layer = model.layers[0]
    path = str(tmp_path / "served")
    model.export(path, format="tf_saved_model", verbose=False)
    assert not layer.statistics_stale
    served = tf.saved_model.load(path)
    assert_close(served.serve(x).numpy(), model.predict(x, verbose=0),
                 **TOL)
    stored = [v.numpy() for v in served.variables]
    assert not sample_shaped(stored, layer)
    # The weights, and a seed generator's state on JAX (2 numbers) and the
    # dropout's (1) where the backend keeps them.
    assert sum(a.size for a in stored) <= model.count_params() + 3
    # And it still trains and refreshes afterwards, as before the export.
    model.train_on_batch(x[:16], np.zeros((16, 1)))
    assert layer.statistics_stale
    model.predict(x, verbose=0)
    assert not layer.statistics_stale


def test_weights_file_holds_no_sample(rng, tmp_path):
    import h5py

    model, _ = trained(rng)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    arrays = {}
    with h5py.File(path) as weights:
        weights.visititems(lambda name, item: arrays.update({name: item[()]})
                           if isinstance(item, h5py.Dataset) else None)
    assert not sample_shaped(arrays.values(), model.layers[0])
    # The layers' part holds their weights, nothing more (the rest is the
    # optimizer's state).
    assert sum(a.size for name, a in arrays.items()
               if name.startswith("layers/")) == model.count_params()


def test_tflite_converts_with_the_defaults(rng):
    tensorflow_only()
    import tensorflow as tf

    model, x = trained(rng)
    flat = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    interpreter = tf.lite.Interpreter(model_content=flat)
    (given,), (taken,) = (interpreter.get_input_details(),
                          interpreter.get_output_details())
    interpreter.resize_tensor_input(given["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], x)
    interpreter.invoke()
    assert_close(interpreter.get_tensor(taken["index"]),
                 model.predict(x, verbose=0), **TOL)
    # No training data inside: the sample alone is 512 x 10 x 4 floats.
    assert len(flat) < 4 * (model.count_params() + 512 * TIMESTEPS)


def test_fit_reestimates_once_at_its_end(rng, monkeypatch):
    """Reading the weights re-estimates, but not inside a training step
    (PyTorch's trainer reads them after every batch): one re-estimation,
    as `fit()` ends."""
    runs = []
    refreshed = pybnlstm.BNLSTM._refreshed_statistics

    def counted(self):
        # Not the symbolic pass Keras' PyTorch trainer makes first, on
        # meta tensors, where nothing is assigned.
        if not pybnlstm._loop.stateless():
            runs.append(self.name)
        return refreshed(self)

    monkeypatch.setattr(pybnlstm.BNLSTM, "_refreshed_statistics", counted)
    x, y = data(rng)
    model = model_of(pybnlstm.BNLSTM(UNITS))
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    assert len(runs) == 1
    assert not model.layers[0].statistics_stale
