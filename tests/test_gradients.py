"""The written-out gradient of the in-loop batch normalizations against
TensorFlow's autodiff of the same forward pass.

`synchronized=True` outside a strategy computes the same outputs but lets
autodiff differentiate through the batch moments; the default path uses
the gradient written out in `pybnlstm.cell.batch_normalizer`.
"""

import keras
import numpy as np
import pytest

import pybnlstm
from conftest import assert_close, randomize

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="uses tf.GradientTape",
)


def gradients(layer, x, mask, direction):
    import tensorflow as tf

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = layer(x, mask=mask, training=True)
        loss = tf.reduce_sum(out * direction)
    names = [w.name for w in layer.trainable_weights]
    grads = tape.gradient(loss, [x] + layer.trainable_weights)
    return dict(zip(["input"] + names, grads))


@pytest.mark.parametrize("return_sequences", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_written_out_gradient_matches_autodiff(rng, masked, return_sequences):
    x = rng.normal(size=(7, 5, 3)).astype("float32")
    mask = None
    if masked:
        mask = np.ones((7, 5), dtype=bool)
        mask[0, 3:] = False
        mask[4, 1:] = False
    shape = (7, 5, 4) if return_sequences else (7, 4)
    direction = rng.normal(size=shape).astype("float32")
    grads = {}
    for synchronized in (False, True):
        layer = pybnlstm.BNLSTM(4, return_sequences=return_sequences,
                                synchronized=synchronized)
        layer.build((7, 5, 3))
        randomize(layer, seed=3)
        grads[synchronized] = gradients(layer, x, mask, direction)
    for name, autodiff in grads[True].items():
        assert autodiff is not None, name
        written = grads[False][name]
        assert np.abs(np.asarray(autodiff)).max() > 1e-4, name
        assert_close(written, autodiff, rtol=1e-3, atol=1e-5)
