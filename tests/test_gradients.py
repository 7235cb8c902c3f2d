"""The written-out gradients of the training recurrence against
TensorFlow's autodiff of the same forward pass.

`synchronized=True` outside a strategy computes the same outputs through
the generic step loop and lets autodiff differentiate it, batch moments
included. The default layer runs, on TensorFlow, the fused recurrence of
`pybnlstm._xla_loops` (its backward pass written out whole); with a custom
activation, or `use_xla=False`, it runs the generic loop with the
normalizations' gradient written out in `pybnlstm.batch_norm.batch_normalizer`.
Both are checked here.
"""

import keras
import numpy as np
import pytest

import pybnlstm
from pybnlstm import _xla_loops
from conftest import assert_close, randomize

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="uses tf.GradientTape",
)


def gradients(layer, x, mask, directions, initial_state=None):
    """Gradients of `sum(output * direction)` over every output, with
    respect to the input, the initial state and the trainable weights."""
    import tensorflow as tf

    x = tf.constant(x)
    states = [tf.constant(s) for s in initial_state or ()]
    with tf.GradientTape() as tape:
        tape.watch([x] + states)
        outputs = layer(x, mask=mask, training=True,
                        initial_state=states or None)
        if not isinstance(outputs, (list, tuple)):
            outputs = [outputs]
        loss = sum(tf.reduce_sum(o * d) for o, d in zip(outputs, directions))
    names = ["input"] + [f"state_{i}" for i in range(len(states))]
    names += [w.name for w in layer.trainable_weights]
    grads = tape.gradient(loss, [x] + states + layer.trainable_weights)
    return dict(zip(names, grads))


def compare(rng, mask=None, initial_state=False,
            reference=(("synchronized", True),), features=3, **kwargs):
    """The default layer's gradients against those of the layer with the
    `reference` arguments: by default `synchronized=True`, autodiff."""
    batch, steps, units = 7, 5, 4
    x = rng.normal(size=(batch, steps, features)).astype("float32")
    states = None
    if initial_state:
        states = [rng.normal(size=(batch, units)).astype("float32")
                  for _ in range(2)]
    grads = {}
    for is_reference in (False, True):
        arguments = dict(reference) if is_reference else {}
        layer = pybnlstm.BNLSTM(units, seed=5, **arguments, **kwargs)
        layer.build(x.shape)
        randomize(layer, seed=3)
        shapes = layer.compute_output_shape(x.shape)
        shapes = list(shapes) if layer.return_state else [shapes]
        directions = [
            np.random.default_rng(7 + i).normal(size=s).astype("float32")
            for i, s in enumerate(shapes)
        ]
        grads[is_reference] = gradients(layer, x, mask, directions, states)
    assert grads[False].keys() == grads[True].keys()
    for name, autodiff in grads[True].items():
        assert autodiff is not None, name
        written = grads[False][name]
        assert np.abs(np.asarray(autodiff)).max() > 1e-4, name
        assert_close(written, autodiff, rtol=1e-3, atol=1e-5)


def some_masked():
    mask = np.ones((7, 5), dtype=bool)
    mask[0, 3:] = False
    mask[4, 1:] = False
    return mask


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("activation", ["tanh", "softsign"])
def test_written_out_gradient_matches_autodiff(
    rng, masked, return_sequences, activation
):
    compare(rng, some_masked() if masked else None,
            return_sequences=return_sequences, activation=activation)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(recurrent_dropout=0.3),
        dict(dropout=0.3, recurrent_dropout=0.3, return_sequences=True),
        dict(go_backwards=True),
        dict(return_state=True),
        dict(return_state=True, return_sequences=True, recurrent_dropout=0.3),
    ],
    ids=["recurrent_dropout", "both_dropouts", "go_backwards", "state",
         "state_sequences_dropout"],
)
@pytest.mark.parametrize("masked", [False, True])
def test_written_out_gradient_matches_autodiff_with(rng, kwargs, masked):
    compare(rng, some_masked() if masked else None, **kwargs)


@pytest.mark.parametrize("masked", [False, True])
def test_written_out_gradient_with_one_feature(rng, masked):
    """A univariate input, which the compiled loops widen with a zero
    feature: the gradients of the input and kernel are the one feature's."""
    compare(rng, some_masked() if masked else None, features=1,
            return_sequences=True)


@pytest.mark.parametrize("masked", [False, True])
def test_written_out_gradient_reaches_the_initial_state(rng, masked):
    compare(rng, some_masked() if masked else None, initial_state=True,
            return_state=True)


def test_use_xla_picks_the_recurrence(monkeypatch, rng):
    compiled = _xla_loops.training_recurrence
    calls = []

    def spy(*args):
        calls.append(args)
        return compiled(*args)

    monkeypatch.setattr(_xla_loops, "training_recurrence", spy)
    x = rng.normal(size=(4, 5, 3)).astype("float32")

    def trains_compiled(**kwargs):
        calls.clear()
        pybnlstm.BNLSTM(4, **kwargs)(x, training=True)
        return bool(calls)

    assert trains_compiled()
    assert trains_compiled(use_xla=True)
    # keras.layers.LSTM's name for it, and its ignored `implementation`.
    assert trains_compiled(use_cudnn=True, implementation=1)
    for kwargs in (dict(use_xla=False),
                   dict(use_cudnn=False),
                   dict(activation="softsign"),
                   dict(recurrent_activation="hard_sigmoid"),
                   dict(synchronized=True),
                   dict(unroll=True),
                   dict(dtype="mixed_float16")):
        assert not trains_compiled(**kwargs), kwargs


def test_use_xla_false_gives_the_compiled_recurrences_gradients(rng):
    compare(rng, mask=some_masked(), reference=dict(use_xla=False),
            recurrent_dropout=0.3)


def test_use_xla_is_checked():
    with pytest.raises(ValueError, match="`use_xla`.*'auto', True or False"):
        pybnlstm.BNLSTM(4, use_xla="yes")
    with pytest.raises(ValueError, match="`use_xla`"):
        pybnlstm.BNLSTM(4, use_xla=1)
    with pytest.raises(ValueError, match="use_xla=True.*needs activation='tanh'"):
        pybnlstm.BNLSTM(4, use_xla=True, activation="relu")
    with pytest.raises(ValueError, match="use_xla=True.*synchronized=False"):
        pybnlstm.BNLSTM(4, use_xla=True, synchronized=True)
