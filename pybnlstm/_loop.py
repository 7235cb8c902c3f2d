"""The time loop: `keras.ops.scan`, except where it does not fit; and a
conditional that stays a Python branch where it can.

On TensorFlow, Keras' `ops.scan` (3.15) shapes its outputs like its carry
and builds a `tf.while_loop` without `maximum_iterations`, which XLA needs
to differentiate through the loop (`jit_compile=True`, the default on
GPUs). There the loop is written with `tf.while_loop` directly.

Under XLA on a CPU, a step that reads its inputs by index runs slower:
XLA fuses each indexed read into the element-wise work that uses it, and
such a fused loop is much slower than one over plain buffers (a
batch-normalized inference step took 70 ms over 50 steps at batch 256
with 256 units, against 46 ms with its inputs passed in the carry and 40
for an LSTM step). So under XLA (`jit_compile=True`), where no gradient
is needed, each step's inputs are read by the step before and passed in
the carry. Without XLA that would cost more than it saves: TensorFlow's
executor runs a few ops per step for each value the loop carries. The
layer's own compiled loops are in `_xla_loops`.
"""

import contextlib
import sys

import keras
from keras import ops


def scan(step, carry, xs, y_dtypes, unroll=False, differentiated=True):
    """Runs `step(carry, x_t) -> (carry, y_t)` over the leading axis of `xs`.

    Args:
        step: the pure step function.
        carry: initial carry, a structure of tensors.
        xs: a structure of tensors, all with the same leading (time) axis.
        y_dtypes: the dtypes of `y_t`, in its structure (TensorFlow's
            loop allocates its outputs before tracing the step).
        unroll: if `True`, a Python loop over the static length.
        differentiated: `False` where no gradient will be taken (one
            still flows, only slower): then under XLA on TensorFlow each
            step's inputs come in the loop's carry.

    Returns:
        `(final_carry, ys)`, with the `y_t` stacked along a leading axis.
    """
    if unroll:
        return _unrolled(step, carry, xs)
    if keras.backend.backend() != "tensorflow":
        return ops.scan(step, carry, xs)
    return _tf_scan(
        step, carry, xs, y_dtypes, not differentiated and _under_xla()
    )


def nonempty(sequence, run, otherwise):
    """`run()` where the time-major `sequence` has steps, `otherwise()`
    where it has none (a `tf.cond` where its length is known only when the
    function runs): XLA cannot compile a loop that reads from a sequence
    of no steps."""
    length = sequence.shape[0]
    if length is not None:
        return run() if length else otherwise()
    import tensorflow as tf

    return tf.cond(tf.shape(sequence)[0] > 0, run, otherwise)


def cond(pred, true_fn, false_fn):
    """`true_fn()` if `pred` else `false_fn()`: a Python branch where
    `pred` has a value (eager execution), `ops.cond` where it is being
    traced. Eagerly, `ops.cond` on JAX would trace and compile both
    branches at every call."""
    if keras.backend.backend() == "torch":
        # PyTorch's ops.cond is a Python branch already, and takes the
        # first branch on the meta tensors of Keras' symbolic build.
        return ops.cond(pred, true_fn, false_fn)
    value = concrete(pred)
    if value is None:
        return ops.cond(pred, true_fn, false_fn)
    return true_fn() if value else false_fn()


def concrete(pred):
    """The Python boolean of a scalar tensor, or `None` where it has no
    value yet (it is being traced)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        known = tf.executing_eagerly()
    elif backend == "jax":
        import jax

        known = not isinstance(pred, jax.core.Tracer)
    else:
        known = True
    return bool(ops.convert_to_numpy(pred)) if known else None


def _under_xla():
    """Whether TensorFlow is tracing for XLA (`jit_compile=True`)."""
    import tensorflow as tf

    try:  # Not public API: without it, the loop runs as without XLA.
        from tensorflow.python.ops.control_flow_util import (
            GraphOrParentsInXlaContext,
        )
    except ImportError:
        return False
    return GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


def recording():
    """Whether a TensorFlow gradient tape could record what runs next."""
    try:  # Not public API: without it, assume that one could.
        from tensorflow.python.eager.record import could_possibly_record
    except ImportError:
        return True
    return could_possibly_record()


def unrecorded():
    """A context in which no TensorFlow gradient tape records (a no-op on
    other backends)."""
    if keras.backend.backend() != "tensorflow":
        return contextlib.nullcontext()
    try:  # Not public API: without it, tapes record as usual.
        from tensorflow.python.eager.record import stop_recording
    except ImportError:
        return contextlib.nullcontext()
    return stop_recording()


def stateless():
    """Whether variables are being read and written through a Keras
    `StatelessScope` (`stateless_call`): a function traced there would keep
    the values the scope gave it as constants."""
    try:  # Not public API: without it, assume that they are.
        from keras.src.backend import in_stateless_scope
    except ImportError:
        return True
    return in_stateless_scope()


def exporting():
    """Whether Keras is exporting a model: `model.export()`, an
    `ExportArchive`, and TFLite's converter, which goes through one."""
    return _running("keras.src.export")


def training_step():
    """Whether Keras' PyTorch trainer is inside a training step, where it
    reads the model's weights after every batch."""
    return _running("keras.src.backend.torch.trainer", "train_step")


def _running(module, function=None):
    """Whether code of `module` (a module or a package), or its function
    `function`, is running further up the stack. Keras has no hook for a
    layer to learn what its model is doing, so the frames tell."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if (name == module or name.startswith(module + ".")) and (
                function is None or frame.f_code.co_name == function):
            return True
        frame = frame.f_back
    return False


def _at(xs, t):
    return keras.tree.map_structure(lambda x: x[t], xs)


def _unrolled(step, carry, xs):
    ys = []
    for t in range(keras.tree.flatten(xs)[0].shape[0]):
        carry, y = step(carry, _at(xs, t))
        ys.append(y)
    return carry, keras.tree.map_structure(lambda *y: ops.stack(y), *ys)


def _tf_scan(step, carry, xs, y_dtypes, carry_inputs):
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
        return [a.read(t) for a in inputs]

    # The outputs' dtypes are given, so that the step is traced only once,
    # inside the loop.
    outputs = [
        tf.TensorArray(dtype, size=length, infer_shape=True)
        for dtype in keras.tree.flatten(y_dtypes)
    ]

    def body(t, carry, outputs, current=None):
        if current is None:
            current = read(t)
        carry, y = step(carry, keras.tree.pack_sequence_as(xs, current))
        flat = keras.tree.flatten(y)
        outputs = [a.write(t, v) for a, v in zip(outputs, flat)]
        if not carry_inputs:
            return t + 1, carry, outputs
        # The last step reads its own inputs again; they go unused.
        return t + 1, carry, outputs, read(tf.minimum(t + 1, length - 1))

    start = (tf.constant(0), carry, outputs)
    if carry_inputs:
        start += (read(0),)
    final = tf.while_loop(
        lambda t, *_: t < length, body, start, maximum_iterations=length
    )
    carry, outputs = final[1], final[2]
    ys = keras.tree.pack_sequence_as(y_dtypes, [a.stack() for a in outputs])
    return carry, ys
