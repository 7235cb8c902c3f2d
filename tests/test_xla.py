"""The layer inside a function that XLA compiles (`jit_compile=True`, as
Keras compiles a model's steps on a GPU), on TensorFlow: outputs against
the NumPy reference, and gradients against the uncompiled layer's."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, assert_equal
from conftest import built_layer as any_built_layer
from reference import reference_for

from pybnlstm import _loop, _xla_loops

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="XLA compilation of a tf.function",
)


def some_masked():
    mask = np.ones((6, 5), dtype=bool)
    mask[0, 3:] = False
    mask[1, :2] = False
    return mask


def built_layer(**kwargs):
    """A layer without a reference sample: a refresh of its statistics
    would run a loop of its own (see test_refresh.py)."""
    return any_built_layer(statistics_sample=0, **kwargs)


@pytest.fixture
def loops(monkeypatch):
    """Which time loops each call traced, in order: "compiled" for
    `_xla_loops`'s inference loop, "training" for its training loops, and
    for the step-by-step loop "carried" or "indexed", by whether each
    step's inputs came in its carry."""
    calls = []
    scan = _loop._tf_scan

    def spy_scan(*args):
        calls.append("carried" if args[-1] else "indexed")
        return scan(*args)

    def spy(name, make):
        def made(*args):
            run = make(*args)

            def traced(*inputs):
                calls.append(name)
                return run(*inputs)

            return traced

        return made

    monkeypatch.setattr(_loop, "_tf_scan", spy_scan)
    monkeypatch.setattr(_xla_loops, "inference_recurrence",
                        spy("compiled", _xla_loops.inference_recurrence))
    monkeypatch.setattr(_xla_loops, "training_recurrence",
                        spy("training", _xla_loops.training_recurrence))
    return calls


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("features", [3, 1])
def test_compiled_layer_matches_reference(rng, loops, training, go_backwards,
                                          features):
    import tensorflow as tf

    layer = built_layer(input_shape=(6, 5, features), return_sequences=True,
                        return_state=True, go_backwards=go_backwards)
    x = rng.normal(size=(6, 5, features)).astype("float32")
    mask = some_masked()
    ref = reference_for(layer)
    run = tf.function(
        lambda x, mask: layer(x, mask=mask, training=training),
        jit_compile=True,
    )
    got = run(x, mask)
    want = ref.run(x, training=training, mask=mask, go_backwards=go_backwards)
    for a, b in zip(got, want):
        assert_close(a, b, **TOL)
    assert loops == ["training" if training else "compiled"]


@pytest.mark.parametrize("masked", [False, True])
def test_inference_runs_compiled_traced_and_eager(rng, loops, masked):
    import tensorflow as tf

    layer = built_layer(return_sequences=True, return_state=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    mask = some_masked() if masked else None
    want = reference_for(layer).run(x, training=False, mask=mask)
    traced = tf.function(lambda x: layer(x, mask=mask, training=False))(x)
    eager = layer(x, mask=mask, training=False)
    for got in (traced, eager):
        for a, b in zip(got, want):
            assert_close(a, b, **TOL)
    # Both calls run the layer's one trace of its inference pass.
    assert loops == ["compiled"]


def inference_gradients(layer, x, direction):
    import tensorflow as tf

    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(layer(x, training=False) * direction)
    return tape.gradient(loss, [x] + layer.trainable_weights)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_gradient_through_inference(rng, loops, jit_compile):
    # Under a tape, inference runs step by step (TensorFlow cannot
    # differentiate a compiled loop from an uncompiled function); inside
    # an XLA compilation, with its inputs in the carry. Both against the
    # eager gradient.
    import tensorflow as tf

    layer = built_layer(return_sequences=True)
    x = tf.constant(rng.normal(size=(6, 5, 3)).astype("float32"))
    direction = rng.normal(size=(6, 5, 4)).astype("float32")
    traced = tf.function(inference_gradients, jit_compile=jit_compile)(
        layer, x, direction)
    assert loops == ["carried" if jit_compile else "indexed"]
    eager = inference_gradients(layer, x, direction)
    for a, b in zip(traced, eager):
        assert np.abs(b.numpy()).max() > 1e-3
        assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_fit_trains_through_a_frozen_layer(rng, loops):
    # Frozen, the layer runs its inference loop in fit(), under the
    # gradient tape: step by step there, and the layer before it learns.
    layer = built_layer(input_shape=(8, 5, 4), return_sequences=False)
    layer.trainable = False
    dense = keras.layers.Dense(4)
    model = keras.Sequential([keras.Input((5, 3)), dense, layer])
    model.compile("sgd", "mse")
    before = dense.kernel.numpy().copy()
    model.fit(rng.normal(size=(8, 5, 3)), rng.normal(size=(8, 4)),
              epochs=1, batch_size=8, verbose=0)
    assert np.abs(dense.kernel.numpy() - before).max() > 1e-6
    assert loops and set(loops) == {"indexed"}
    model.predict(rng.normal(size=(8, 5, 3)), verbose=0)
    assert loops[-1] == "compiled"


def softsign(v):
    return v / (1 + np.abs(v))


@pytest.mark.parametrize("kwargs, activation", [
    (dict(use_xla=False), np.tanh),
    (dict(activation="softsign"), softsign),
], ids=["use_xla_false", "softsign"])
def test_traced_inference_step_by_step_where_xla_does_not_apply(
    rng, loops, kwargs, activation
):
    import tensorflow as tf

    layer = built_layer(return_sequences=True, **kwargs)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    got = tf.function(lambda x: layer(x, training=False))(x)
    want = reference_for(layer, activation=activation).run(x, training=False)
    assert_close(got, want[0], **TOL)
    assert loops == ["indexed"]


@pytest.mark.parametrize("length", [0, 3])
def test_inference_of_any_length(rng, loops, length):
    # XLA cannot compile a loop over no steps: those run step by step, also
    # when the length is only known when the function runs.
    import tensorflow as tf

    layer = built_layer(return_state=True)
    x = rng.normal(size=(6, length, 3)).astype("float32")
    eager = layer(x, training=False)
    static = tf.function(lambda x: layer(x, training=False))(x)
    dynamic = tf.function(
        lambda x: layer(x, training=False),
        input_signature=[tf.TensorSpec((None, None, 3), tf.float32)],
    )(x)
    for got in (static, dynamic):
        for a, b in zip(got, eager):
            assert_close(a, b, **TOL)
    if length == 0:
        assert_equal(eager[0], np.zeros((6, 4)))
    # The eager call and the static trace share the layer's trace of its
    # inference pass for this length; the dynamic one traces both branches.
    one = "compiled" if length else "indexed"
    assert loops == [one, "compiled", "indexed"]
