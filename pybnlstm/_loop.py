"""The time loop: `keras.ops.scan`, except where it does not fit.

On TensorFlow, Keras' `ops.scan` (3.15) shapes its outputs like its carry
and builds a `tf.while_loop` without `maximum_iterations`, which XLA needs
to differentiate through the loop (`jit_compile=True`, the default on
GPUs). There the loop is written with `tf.while_loop` directly.
"""

import keras
from keras import ops


def scan(step, carry, xs, unroll=False):
    """Runs `step(carry, x_t) -> (carry, y_t)` over the leading axis of `xs`.

    Args:
        step: the pure step function.
        carry: initial carry, a structure of tensors.
        xs: a structure of tensors, all with the same leading (time) axis.
        unroll: if `True`, a Python loop over the static length.

    Returns:
        `(final_carry, ys)`, with the `y_t` stacked along a leading axis.
    """
    if unroll:
        return _unrolled(step, carry, xs)
    if keras.backend.backend() == "tensorflow":
        return _tf_scan(step, carry, xs)
    return ops.scan(step, carry, xs)


def _at(xs, t):
    return keras.tree.map_structure(lambda x: x[t], xs)


def _unrolled(step, carry, xs):
    ys = []
    for t in range(keras.tree.flatten(xs)[0].shape[0]):
        carry, y = step(carry, _at(xs, t))
        ys.append(y)
    return carry, keras.tree.map_structure(lambda *y: ops.stack(y), *ys)


def _tf_scan(step, carry, xs):
    import tensorflow as tf

    flat_xs = [tf.convert_to_tensor(x) for x in keras.tree.flatten(xs)]
    length = flat_xs[0].shape[0]
    if length is None:
        length = tf.shape(flat_xs[0])[0]
    inputs = [
        tf.TensorArray(x.dtype, size=length, element_shape=x.shape[1:])
        .unstack(x)
        for x in flat_xs
    ]

    def read(t):
        return keras.tree.pack_sequence_as(xs, [a.read(t) for a in inputs])

    # The first step runs outside the loop to learn the outputs' dtypes.
    carry, y = step(carry, read(0))
    outputs = [
        tf.TensorArray(v.dtype, size=length, element_shape=v.shape).write(0, v)
        for v in keras.tree.flatten(y)
    ]

    def body(t, carry, outputs):
        carry, y = step(carry, read(t))
        flat = keras.tree.flatten(y)
        outputs = [a.write(t, v) for a, v in zip(outputs, flat)]
        return t + 1, carry, outputs

    _, carry, outputs = tf.while_loop(
        lambda t, *_: t < length,
        body,
        (tf.constant(1), carry, outputs),
        maximum_iterations=length - 1,
    )
    ys = keras.tree.pack_sequence_as(y, [a.stack() for a in outputs])
    return carry, ys
