"""Static shapes in a traced function, on TensorFlow: the layer's outputs
keep the length and batch size the inputs had, as Keras' LSTM's do, on the
compiled loops and step by step, so a layer after it that needs them (an
unrolled BNLSTM needs its length) can be traced."""

import itertools

import keras
import numpy as np
import pytest

import pybnlstm

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="static shapes of tf.function traces")

tf = pytest.importorskip("tensorflow")


def traced_shapes(layer, spec, training, masked):
    """The static shapes of `layer`'s outputs traced for inputs of `spec`."""

    def call(x):
        mask = tf.reduce_any(tf.not_equal(x, 0.0), axis=-1) if masked else None
        return layer(x, mask=mask, training=training)

    outputs = tf.function(call).get_concrete_function(spec).structured_outputs
    return [tuple(t.shape) for t in tf.nest.flatten(outputs)]


@pytest.mark.parametrize(
    "use_xla, training, masked, go_backwards",
    [(x, t, m, False) for x, t, m in itertools.product(
        ["auto", False], [True, False], [False, True])]
    + [("auto", True, False, True), ("auto", False, True, True)])
@pytest.mark.parametrize("batch", [None, 4])
def test_outputs_keep_the_static_shapes_of_keras_lstm(
        use_xla, training, masked, go_backwards, batch):
    spec = tf.TensorSpec((batch, 6, 3), tf.float32)
    options = dict(return_sequences=True, return_state=True,
                   go_backwards=go_backwards)
    layer = pybnlstm.BNLSTM(5, use_xla=use_xla, **options)
    lstm = keras.layers.LSTM(5, **options)
    expected = traced_shapes(lstm, spec, training, masked)
    assert expected == [(batch, 6, 5), (batch, 5), (batch, 5)]
    assert traced_shapes(layer, spec, training, masked) == expected


def test_stacked_into_an_unrolled_layer_trains_and_predicts():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 3)).astype("float32")
    y = x[:, -1, :1] - x[:, 0, 1:2]
    model = keras.Sequential([
        keras.Input((6, 3)),
        pybnlstm.BNLSTM(8, return_sequences=True),
        pybnlstm.BNLSTM(4, unroll=True),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    predictions = model.predict(x[:5], verbose=0)
    assert predictions.shape == (5, 1) and np.all(np.isfinite(predictions))
