"""Everyday flows that work with a keras.layers.LSTM: eager calls under a
gradient tape and eager fine-tuning after `fit()`, concurrent inference,
float64, `get_initial_state()` into `initial_state`, and continuing a
sequence (chunks, step-by-step decoding) with the statistics of the steps
it continues at."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, built_layer, to_np
from reference import reference_for

import pybnlstm

TIMESTEPS, FEATURES, UNITS = 8, 3, 5


def model_of(layer):
    model = keras.Sequential([keras.Input((TIMESTEPS, FEATURES)), layer,
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    return model


def data(rng, n=32, dtype="float32"):
    x = rng.normal(size=(n, TIMESTEPS, FEATURES)).astype(dtype)
    return x, np.cumsum(x, axis=1)[:, -1, :1]


def tensorflow_only():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("TensorFlow's gradient tape")


def test_eager_call_under_a_gradient_tape_after_training(rng):
    tensorflow_only()
    import tensorflow as tf

    x, y = data(rng)
    model = model_of(pybnlstm.BNLSTM(UNITS))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    for stale in (False, True):
        if stale:  # a step after fit() leaves the statistics stale
            model.train_on_batch(x[:8], y[:8])
        inputs = tf.constant(x[:4])
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = model(inputs)
        gradient = tape.gradient(outputs, inputs)
        assert gradient.shape == inputs.shape
        assert np.isfinite(gradient.numpy()).all()
        assert np.abs(gradient.numpy()).max() > 0
        assert_close(outputs, model.predict(x[:4], verbose=0), **TOL)


def test_eager_fine_tuning_after_fit(rng):
    """Fine-tuning the head with `run_eagerly=True`, the layer frozen: its
    inference-mode call, under the training step's tape, re-estimates the
    statistics first."""
    x, y = data(rng)
    model = model_of(pybnlstm.BNLSTM(UNITS))
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    model.train_on_batch(x[:8], y[:8])
    layer = model.layers[0]
    assert layer.statistics_stale
    layer.trainable = False
    model.compile("adam", "mse", run_eagerly=True)
    history = model.fit(x, y, batch_size=8, epochs=2, verbose=0,
                        validation_split=0.25)
    assert np.isfinite(history.history["val_loss"]).all()
    assert not layer.statistics_stale
    out = layer(x[:4])
    assert_close(out, reference_for(layer).run(x[:4], training=False)[1],
                 **TOL)


CONCURRENT = textwrap.dedent("""
    import json, threading
    import keras, numpy as np, pybnlstm

    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 8, 3)).astype("float32")
    y = np.cumsum(x, axis=1)[:, -1, :1]
    model = keras.Sequential([keras.Input((8, 3)), pybnlstm.BNLSTM(5),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")

    def twin_of(model):
        # The weights and the reference sample, not through
        # `model.weights` (reading them would re-estimate).
        twin = keras.models.clone_model(model)
        mine = model.layers[0].cell.weights + model.layers[1].weights
        theirs = twin.layers[0].cell.weights + twin.layers[1].weights
        mine += model.layers[0].reference_sample.variables
        theirs += twin.layers[0].reference_sample.variables
        for a, b in zip(mine, theirs):
            b.assign(a.value)
        return twin

    def stale_answers():
        want = np.asarray(twin_of(model).predict_on_batch(x))
        answers = []

        def serve(start):
            for request in range(40):
                i = (start + request) % 28
                answers.append((i, model.predict_on_batch(x[i:i + 4])))

        threads = [threading.Thread(target=serve, args=(7 * k,))
                   for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(answers) == 160
        return sum(
            not np.allclose(np.asarray(a), want[i:i + 4], atol=1e-5)
            for i, a in answers)

    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    print(json.dumps(stale_answers()))
""")


@pytest.mark.parametrize("process", range(3))
def test_concurrent_inference_right_after_training(process):
    """4 threads x 40 `predict_on_batch()` requests right after `fit()`,
    against a twin with the same weights and sample, in fresh processes:
    before `fit()` ended with the statistics re-estimated, the first
    requests raced to re-estimate them, and one answer in 160 used the
    old statistics in 2 of 3 processes."""
    if keras.backend.backend() == "jax":
        # Keras' JAX predict_on_batch() hands the model's non-trainable
        # state from call to call: with keras.layers.LSTM and a
        # BatchNormalization, threads fail the same way ("buffer has been
        # deleted or donated").
        pytest.skip("Keras' JAX trainer is not thread-safe")
    result = subprocess.run([sys.executable, "-c", CONCURRENT],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == 0


@pytest.mark.parametrize("policy", ["layer", "floatx"])
def test_float64(rng, policy):
    x, y = data(rng, dtype="float64")
    if policy == "floatx":
        keras.config.set_floatx("float64")
        kwargs = {}
    else:
        kwargs = {"dtype": "float64"}
    try:
        layer = pybnlstm.BNLSTM(UNITS, **kwargs)
        model = keras.Sequential([keras.Input((TIMESTEPS, FEATURES)), layer,
                                  keras.layers.Dense(1, **kwargs)])
        model.compile("adam", "mse")
        history = model.fit(x, y, batch_size=8, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all()
        # As Keras' LSTM computes under the same settings (floatx alone
        # leaves a float32 dtype policy in place).
        lstm = keras.layers.LSTM(UNITS, **kwargs)
        assert layer.compute_dtype == lstm.compute_dtype
        out = layer(x[:6])
        assert keras.backend.standardize_dtype(out.dtype) == \
            keras.backend.standardize_dtype(lstm(x[:6]).dtype)
        # Against the NumPy reference (float64), with the statistics the
        # layer re-estimated (kept in float32).
        assert_close(out, reference_for(layer).run(x[:6], training=False)[1],
                     **TOL)
        trained = layer(x[:6], training=True)
        assert_close(trained,
                     reference_for(layer).run(x[:6], training=True)[1],
                     **TOL)
    finally:
        keras.config.set_floatx("float32")


def test_get_initial_state_goes_into_initial_state(rng):
    layer = built_layer((4, TIMESTEPS, FEATURES), units=UNITS)
    x = rng.normal(size=(4, TIMESTEPS, FEATURES)).astype("float32")
    states = layer.get_initial_state(4)
    assert len(states) == 3
    assert_close(layer(x, initial_state=states), layer(x), **TOL)


def continuation_layer(rng, **kwargs):
    layer = built_layer((6, TIMESTEPS, FEATURES), units=UNITS,
                        return_sequences=True, return_state=True, **kwargs)
    x = rng.normal(size=(6, TIMESTEPS, FEATURES)).astype("float32")
    return layer, x


def step_tensor(batch, step):
    return keras.ops.full((batch, 1), step, dtype="float32")


def test_a_sequence_continued_in_chunks_equals_the_whole(rng):
    layer, x = continuation_layer(rng)
    whole, h_whole, c_whole = layer(x)
    first, h, c = layer(x[:, :5])
    rest, h, c = layer(x[:, 5:], initial_state=[h, c, step_tensor(6, 5)])
    assert_close(np.concatenate([to_np(first), to_np(rest)], axis=1), whole,
                 **TOL)
    assert_close(h, h_whole, **TOL)
    assert_close(c, c_whole, **TOL)
    # Without the step, the continuation restarts at row 0: other numbers.
    restarted, _, _ = layer(x[:, 5:], initial_state=[h, c])
    assert not np.allclose(to_np(restarted), to_np(rest), atol=1e-3)


def test_step_by_step_decoding_equals_the_whole(rng):
    layer, x = continuation_layer(rng)
    whole, _, _ = layer(x)
    h, c, step = layer.get_initial_state(6)
    outputs = []
    for t in range(TIMESTEPS):
        output, h, c = layer(x[:, t:t + 1], initial_state=[h, c, step])
        step = step + 1
        outputs.append(to_np(output))
    assert_close(np.concatenate(outputs, axis=1), whole, **TOL)
    # Steps past the kept rows reuse the last one, as a long pass does.
    longer = np.concatenate([x, x[:, :3]], axis=1)
    whole_longer, _, _ = layer(longer)
    more, _, _ = layer(x[:, :3], initial_state=[h, c, step])
    assert_close(more, to_np(whole_longer)[:, TIMESTEPS:], **TOL)


def test_bad_initial_state_length():
    layer = built_layer((2, TIMESTEPS, FEATURES), units=UNITS)
    x = np.zeros((2, TIMESTEPS, FEATURES), "float32")
    h = np.zeros((2, UNITS), "float32")
    with pytest.raises(ValueError, match="initial_state"):
        layer(x, initial_state=[h])


def test_training_on_one_sequence_warns(rng):
    x, y = data(rng, 4)
    model = model_of(pybnlstm.BNLSTM(UNITS))
    with pytest.warns(UserWarning, match="batch of one sequence"):
        model.fit(x, y, batch_size=1, epochs=1, verbose=0)
    layer = pybnlstm.BNLSTM(UNITS)
    with pytest.warns(UserWarning, match="set_weights"):
        layer(x[:1], training=True)


def test_training_on_several_sequences_does_not_warn(rng, recwarn):
    x, y = data(rng, 8)
    model = model_of(pybnlstm.BNLSTM(UNITS))
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    model.predict(x[:1], verbose=0)
    assert not [w for w in recwarn if "one sequence" in str(w.message)]
