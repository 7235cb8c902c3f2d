"""What a keras.layers.LSTM user expects of BNLSTM."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, assert_equal, built_layer, to_np
from reference import reference_for, weights_of

import pybnlstm

WEIGHT_SHAPES = {
    "kernel": (3, 16),
    "recurrent_kernel": (4, 16),
    "bias": (16,),
    "gamma_x": (16,),
    "gamma_h": (16,),
    "gamma_c": (4,),
    "beta_c": (4,),
    "moving_mean_x": (5, 16),
    "moving_variance_x": (5, 16),
    "moving_mean_h": (5, 16),
    "moving_variance_h": (5, 16),
    "moving_mean_c": (5, 4),
    "moving_variance_c": (5, 4),
    "moving_count": (5,),
}
# State of the process, not weights: the reference sample (512 sequences
# of 5 steps of 3 features and their weight, their initial states, and its
# bookkeeping) and the first training batch size (see
# BNLSTM._batch_bucket).
STATE_SHAPES = {
    "reference_sequences": (512, 5, 4),
    "reference_states": (512, 8),
    "reference_status": (4,),
    "batch_quantum": (),
}


def test_weight_names_and_shapes():
    layer = pybnlstm.BNLSTM(4)
    layer.build((None, 5, 3))
    assert {w.name: tuple(w.shape) for w in layer.weights} == WEIGHT_SHAPES
    trainable = {w.name for w in layer.trainable_weights}
    assert trainable == {"kernel", "recurrent_kernel", "bias", "gamma_x",
                         "gamma_h", "gamma_c", "beta_c"}
    assert all(w.dtype == "float32" for w in layer.non_trainable_weights)
    assert layer.batch_quantum.dtype == "int32"
    state = [*layer.reference_sample.variables, layer.batch_quantum]
    assert {v.name: tuple(v.shape) for v in state} == STATE_SHAPES
    # Only JAX's compiled steps need the state among the variables.
    seeds = {id(g.state) for g in layer._seed_generators}
    others = {v.name for v in layer.variables
              if id(v) not in seeds and v.name not in WEIGHT_SHAPES}
    jax = keras.backend.backend() == "jax"
    assert others == (set(STATE_SHAPES) if jax else set())
    without = pybnlstm.BNLSTM(4, statistics_sample=0)
    without.build((None, 5, 3))
    assert {w.name: tuple(w.shape) for w in without.weights} == WEIGHT_SHAPES


def test_max_timesteps_default_explicit_and_unknown():
    layer = pybnlstm.BNLSTM(4)
    layer.build((None, 7, 3))
    assert layer.max_timesteps == 7
    assert layer.get_config()["max_timesteps"] == 7
    layer = pybnlstm.BNLSTM(4, max_timesteps=3)
    layer.build((None, None, 3))
    assert layer.cell.moving_mean_c.shape == (3, 4)
    with pytest.raises(ValueError, match="max_timesteps"):
        pybnlstm.BNLSTM(4).build((None, None, 3))
    with pytest.raises(ValueError, match="max_timesteps"):
        keras.Sequential([keras.Input((None, 3)), pybnlstm.BNLSTM(4)])


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(units=0), ValueError, "`units`.*positive integer.*got 0"),
        (dict(units=-3), ValueError, "`units`"),
        (dict(units="abc"), TypeError, "`units`.*'abc'"),
        (dict(units=2.5), TypeError, "`units`"),
        (dict(units=True), TypeError, "`units`"),
        (dict(units=4, dropout=1.0), ValueError, "`dropout`.*\\[0, 1\\)"),
        (dict(units=4, dropout=-0.1), ValueError, "`dropout`"),
        (dict(units=4, recurrent_dropout=2), ValueError,
         "`recurrent_dropout`"),
        (dict(units=4, dropout="half"), TypeError, "`dropout`"),
        (dict(units=4, momentum=1.5), ValueError, "`momentum`.*\\[0, 1\\]"),
        (dict(units=4, epsilon=0), ValueError, "`epsilon`.*positive"),
        (dict(units=4, epsilon=-1e-3), ValueError, "`epsilon`"),
        (dict(units=4, max_timesteps=0), ValueError, "`max_timesteps`"),
        (dict(units=4, max_timesteps=2.0), TypeError, "`max_timesteps`"),
        (dict(units=4, seed="x"), TypeError, "`seed`"),
        (dict(units=4, synchronized=1), TypeError, "`synchronized`"),
        (dict(units=4, statistics_sample=-1), ValueError,
         "`statistics_sample`.*non-negative integer.*got -1"),
        (dict(units=4, statistics_sample=1.5), TypeError,
         "`statistics_sample`"),
        (dict(units=4, input_statistics="time"), ValueError,
         "`input_statistics`.*'step', 'sequence'.*'time'"),
        (dict(units=4, use_xla="yes"), ValueError, "`use_xla`"),
        (dict(units=4, use_cudnn=1), ValueError, "`use_cudnn`"),
        (dict(units=4, use_xla=True, use_cudnn=False), ValueError,
         "use_cudnn"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, error, words):
    with pytest.raises(error, match=words):
        pybnlstm.BNLSTM(**kwargs)


def test_synchronized_needs_tensorflow():
    if keras.backend.backend() == "tensorflow":
        assert pybnlstm.BNLSTM(2, synchronized=True).synchronized is True
    else:
        with pytest.raises(ValueError, match="synchronized=True.*TensorFlow"):
            pybnlstm.BNLSTM(2, synchronized=True)


def test_momentum_bounds_are_allowed():
    assert pybnlstm.BNLSTM(2, momentum=0).momentum == 0.0
    assert pybnlstm.BNLSTM(2, momentum=1).momentum == 1.0


@pytest.mark.parametrize("shape", [(4, 3), (2, 4, 3, 1)])
def test_input_must_be_3d(shape):
    with pytest.raises(ValueError, match="ndim=3|3D"):
        pybnlstm.BNLSTM(4)(np.zeros(shape, "float32"))


def test_bad_initial_state():
    layer = pybnlstm.BNLSTM(4)
    with pytest.raises(ValueError, match="`initial_state`"):
        layer(np.zeros((2, 3, 3)), initial_state=[np.zeros((2, 4))])


def test_output_shapes_eager_and_symbolic():
    x = np.zeros((2, 5, 3), "float32")
    for return_sequences in (False, True):
        layer = pybnlstm.BNLSTM(4, return_sequences=return_sequences,
                                return_state=True)
        out, h, c = layer(x)
        assert out.shape == ((2, 5, 4) if return_sequences else (2, 4))
        assert h.shape == c.shape == (2, 4)
        symbolic = pybnlstm.BNLSTM(4, return_sequences=return_sequences,
                                   return_state=True)(keras.Input((5, 3)))
        assert [tuple(t.shape) for t in symbolic] == [
            (None, 5, 4) if return_sequences else (None, 4), (None, 4),
            (None, 4)]


def test_stateful_continues_time_index_and_resets(rng):
    x = rng.normal(size=(6, 8, 3)).astype("float32")
    layer = built_layer(input_shape=(6, 4, 3), stateful=True,
                        return_sequences=True)
    ref = reference_for(layer)
    whole = ref.run(x, training=False)[0]
    first, second = layer(x[:, :4]), layer(x[:, 4:])
    assert_close(np.concatenate(to_np([first, second]), 1), whole,
                               **TOL)
    layer.reset_state()
    assert_close(layer(x[:, :4]), first, **TOL)
    # In training the second half updates the rows past the first half
    # (here past max_timesteps, so nothing), not rows 0..3 again.
    layer.reset_state()
    layer(x[:, :4], training=True)
    ref.run(x[:, :4], training=True)
    layer(x[:, 4:], training=True)
    for key, value in weights_of(layer).items():
        assert_close(value, ref.w[key], **TOL)


def test_stateful_in_fit_and_predict(rng):
    x = rng.normal(size=(8, 5, 3)).astype("float32")
    model = keras.Sequential([
        keras.Input((5, 3), batch_size=4),
        pybnlstm.BNLSTM(4, stateful=True, max_timesteps=10),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=1, shuffle=False,
              verbose=0)
    layer = model.layers[0]
    if keras.backend.backend() != "jax":
        # Keras' stateful RNNs, its own LSTM included, keep no state across
        # fit() batches on JAX: their state variables are not tracked.
        assert float(layer.states[2].numpy()[0, 0]) == 10.0
    layer.reset_state()
    assert float(layer.states[2].numpy()[0, 0]) == 0.0
    assert model.predict(x, batch_size=4, verbose=0).shape == (8, 1)
    with pytest.raises(ValueError, match="batch size"):
        layer(x[:3])


def test_bidirectional(rng, tmp_path):
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    bi = keras.layers.Bidirectional(
        pybnlstm.BNLSTM(4, return_sequences=True, return_state=True))
    out, fh, fc, bh, bc = bi(x, training=True)
    assert out.shape == (6, 5, 8)
    for state in (fh, fc, bh, bc):
        assert state.shape == (6, 4)
    assert bi.backward_layer.go_backwards
    forward = reference_for(bi.forward_layer)
    backward = reference_for(bi.backward_layer)
    f_out = forward.run(x, training=False)[0]
    b_out = backward.run(x, training=False, go_backwards=True)[0]
    assert_close(
        bi(x)[0], np.concatenate([f_out, b_out[:, ::-1]], axis=-1), **TOL)

    model = keras.Sequential([
        keras.Input((5, 3)),
        keras.layers.Bidirectional(pybnlstm.BNLSTM(4)),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    model.fit(x, np.ones((6, 1)), epochs=1, verbose=0)
    path = tmp_path / "bi.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert_close(loaded.predict(x, verbose=0),
                               model.predict(x, verbose=0), rtol=1e-6)


def test_stacked_functional_with_masking(rng):
    x = rng.normal(size=(10, 6, 3)).astype("float32")
    x[:3, 4:] = 0.0  # three samples padded after step 4
    first = pybnlstm.BNLSTM(5, return_sequences=True)
    second = pybnlstm.BNLSTM(4, dropout=0.1, recurrent_dropout=0.1)
    dense = keras.layers.Dense(1)
    inputs = keras.Input((6, 3))
    outputs = dense(second(first(keras.layers.Masking(0.0)(inputs))))
    model = keras.Model(inputs, outputs)
    model.compile("adam", "mse")
    history = model.fit(x, np.ones((10, 1)), epochs=2, batch_size=4,
                        verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    # The mask reaches both layers: a padded sample predicts as its
    # unpadded first 4 steps do through the same layers.
    short_inputs = keras.Input((4, 3))
    short = keras.Model(short_inputs, dense(second(first(short_inputs))))
    assert_close(model.predict(x, verbose=0)[:3],
                 short.predict(x[:3, :4], verbose=0), **TOL)
    assert not np.allclose(to_np(model.predict(x, verbose=0))[3:],
                           to_np(short.predict(x[3:, :4], verbose=0)),
                           atol=1e-4)


def test_fit_trains_statistics_and_predict_uses_them(rng):
    x = rng.normal(size=(10, 5, 3)).astype("float32")
    y = rng.normal(size=(10, 1)).astype("float32")
    model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    layer = model.layers[0]
    before = weights_of(layer)
    # A partial last batch (10 = 4 + 4 + 2) is fine.
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    trained = weights_of(layer)
    for key in ("moving_mean_x", "moving_variance_h", "moving_mean_c",
                "kernel", "gamma_h"):
        assert not np.allclose(trained[key], before[key]), key
    # The first inference re-estimates the statistics (test_refresh.py);
    # later ones change no weight.
    model.evaluate(x, y, verbose=0)
    after = weights_of(layer)
    model.evaluate(x, y, verbose=0)
    model.predict(x, verbose=0)
    for key, value in weights_of(layer).items():
        assert_equal(value, after[key])
    # predict is inference mode: it matches the reference with population
    # statistics, and a sample's output does not depend on its batch.
    ref = reference_for(layer)
    assert_close(
        layer(x), ref.run(x, training=False)[1], **TOL)
    alone = model.predict(x[:1], verbose=0)
    assert_close(model.predict(x, verbose=0)[:1], alone,
                               rtol=1e-5, atol=1e-6)


def test_frozen_layer_keeps_statistics_and_uses_them(rng):
    """As Keras' BatchNormalization: frozen means inference-mode
    normalization, even in training."""
    layer = built_layer()
    layer.trainable = False
    before = weights_of(layer)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    out = layer(x, training=True)
    for key, value in weights_of(layer).items():
        assert_equal(value, before[key])
    assert_close(out, reference_for(layer).run(x, training=False)[1], **TOL)


def test_regularizers_and_constraints(rng):
    layer = pybnlstm.BNLSTM(
        4, kernel_regularizer="l2", recurrent_regularizer="l2",
        bias_regularizer="l2", activity_regularizer="l2",
        kernel_constraint="non_neg")
    model = keras.Sequential([keras.Input((5, 3)), layer])
    model.compile("sgd", "mse")
    model(np.ones((2, 5, 3), "float32"))
    assert len(model.losses) == 4
    model.fit(rng.normal(size=(4, 5, 3)), rng.normal(size=(4, 4)),
              epochs=1, verbose=0)
    assert layer.cell.kernel.numpy().min() >= 0.0


def test_jit_compile_fit(rng):
    model = keras.Sequential([keras.Input((5, 3)),
                              pybnlstm.BNLSTM(4, dropout=0.2),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse", jit_compile=True)
    history = model.fit(rng.normal(size=(8, 5, 3)), np.ones((8, 1)),
                        epochs=2, batch_size=4, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_seed_makes_dropout_reproducible(rng):
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    outs = []
    for _ in range(2):
        layer = pybnlstm.BNLSTM(4, dropout=0.5, recurrent_dropout=0.5,
                                seed=7, kernel_initializer="ones",
                                recurrent_initializer="ones")
        outs.append(layer(x, training=True))
    assert_equal(outs[0], outs[1])


def test_load_lstm_weights(rng):
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    lstm = keras.layers.LSTM(4)
    lstm(x)
    layer = built_layer()
    gamma_before = layer.cell.gamma_x.numpy()
    assert pybnlstm.load_lstm_weights(layer, lstm) is layer
    for mine, theirs in zip(
            (layer.cell.kernel, layer.cell.recurrent_kernel, layer.cell.bias),
            lstm.get_weights()):
        assert_equal(mine.numpy(), theirs)
    assert_equal(layer.cell.gamma_x.numpy(), gamma_before)
    ref = reference_for(layer)
    assert_close(layer(x), ref.run(x, False)[1], **TOL)
    with pytest.raises(ValueError, match="shape"):
        pybnlstm.load_lstm_weights(layer, [w.T for w in lstm.get_weights()])
    with pytest.raises(ValueError, match="expected 3"):
        pybnlstm.load_lstm_weights(layer, lstm.get_weights()[:2])
    with pytest.raises(TypeError, match="`target`"):
        pybnlstm.load_lstm_weights(lstm, layer)
    with pytest.raises(ValueError, match="unbuilt"):
        pybnlstm.load_lstm_weights(pybnlstm.BNLSTM(4), lstm)
