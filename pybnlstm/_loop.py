"""The time loop: `keras.ops.scan`, except where it does not fit.

On TensorFlow, Keras' `ops.scan` (3.15) shapes its outputs like its carry
and builds a `tf.while_loop` without `maximum_iterations`, which XLA needs
to differentiate through the loop (`jit_compile=True`, the default on
GPUs). There the loop is written with `tf.while_loop` directly.
"""

import keras
from keras import ops


def scan(step, carry, xs, y_dtypes, unroll=False):
    """Runs `step(carry, x_t) -> (carry, y_t)` over the leading axis of `xs`.

    Args:
        step: the pure step function.
        carry: initial carry, a structure of tensors.
        xs: a structure of tensors, all with the same leading (time) axis.
        y_dtypes: the dtypes of `y_t`, in its structure (TensorFlow's
            loop allocates its outputs before tracing the step).
        unroll: if `True`, a Python loop over the static length.

    Returns:
        `(final_carry, ys)`, with the `y_t` stacked along a leading axis.
    """
    if unroll:
        return _unrolled(step, carry, xs)
    if keras.backend.backend() == "tensorflow":
        return _tf_scan(step, carry, xs, y_dtypes)
    return ops.scan(step, carry, xs)


def _at(xs, t):
    return keras.tree.map_structure(lambda x: x[t], xs)


def _unrolled(step, carry, xs):
    ys = []
    for t in range(keras.tree.flatten(xs)[0].shape[0]):
        carry, y = step(carry, _at(xs, t))
        ys.append(y)
    return carry, keras.tree.map_structure(lambda *y: ops.stack(y), *ys)


def _tf_scan(step, carry, xs, y_dtypes):
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

    # The outputs' dtypes are given, so that the step is traced only once,
    # inside the loop.
    outputs = [
        tf.TensorArray(dtype, size=length, infer_shape=True)
        for dtype in keras.tree.flatten(y_dtypes)
    ]

    def body(t, carry, outputs):
        carry, y = step(carry, read(t))
        flat = keras.tree.flatten(y)
        outputs = [a.write(t, v) for a, v in zip(outputs, flat)]
        return t + 1, carry, outputs

    _, carry, outputs = tf.while_loop(
        lambda t, *_: t < length,
        body,
        (tf.constant(0), carry, outputs),
        maximum_iterations=length,
    )
    ys = keras.tree.pack_sequence_as(y_dtypes, [a.stack() for a in outputs])
    return carry, ys
