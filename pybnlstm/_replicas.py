"""Sums (and gathers) across the replicas of a `tf.distribute` strategy,
for synchronized batch statistics.

Only TensorFlow has a replica context that a layer can reach from inside
its call; `BNLSTMCell(synchronized=True)` is refused on other backends.
"""

import keras


def replicas_in_sync():
    """The number of replicas the current call runs on (1 outside a
    `tf.distribute` strategy, and on other backends)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def under_strategy():
    """Whether the call runs under a `tf.distribute` strategy (never on
    other backends)."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.distribute.has_strategy()


def replica_sum(tensor):
    """`tensor` summed over the replicas in sync, or itself with one."""
    if replicas_in_sync() == 1:
        return tensor
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.all_reduce(tf.distribute.ReduceOp.SUM, tensor)


def replica_concat(tensor):
    """`tensor` of every replica in sync, concatenated along axis 0, or
    itself with one."""
    if replicas_in_sync() == 1:
        return tensor
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.all_gather(tensor, axis=0)
