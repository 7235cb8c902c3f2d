"""Trains BNLSTM models under a distribution strategy and reports how far
they end from the same model trained on one device; run by
`tests/test_distributed.py` in fresh processes, because devices, strategies
and the backend must be set up before the framework starts.

Usage: python distributed_run.py mirrored OUT.json
       python distributed_run.py worker INDEX PORT0 PORT1 OUT.json
       python distributed_run.py jax OUT.json
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
mode = sys.argv[1]
os.environ["KERAS_BACKEND"] = "jax" if mode == "jax" else "tensorflow"

if mode == "jax":
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
else:
    import tensorflow as tf

if mode == "mirrored":
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
elif mode == "worker":
    index, ports = int(sys.argv[2]), sys.argv[3:5]
    os.environ["TF_CONFIG"] = json.dumps(
        {
            "cluster": {"worker": [f"localhost:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )
    strategy = tf.distribute.MultiWorkerMirroredStrategy()

import keras  # noqa: E402
import numpy as np  # noqa: E402

import pybnlstm  # noqa: E402

GLOBAL_BATCH, STEPS, FEATURES = 64, 6, 3


def data():
    rng = np.random.RandomState(0)
    x = rng.normal(size=(2 * GLOBAL_BATCH, STEPS, FEATURES))
    x = x * [1.0, 10.0, 0.1] + [0.0, 5.0, 0.0]
    # Trailing padding, masked: samples of several lengths.
    lengths = rng.randint(2, STEPS + 1, size=len(x))
    x[np.arange(STEPS)[None, :] >= lengths[:, None]] = 0.0
    y = rng.normal(size=(len(x), 1))
    return x.astype("float32"), y.astype("float32")


def model(synchronized):
    keras.utils.set_random_seed(3)
    layers = [
        keras.Input((STEPS, FEATURES)),
        keras.layers.Masking(0.0),
        pybnlstm.BNLSTM(8, synchronized=synchronized, return_sequences=True),
        pybnlstm.BNLSTM(4, synchronized=synchronized),
        keras.layers.Dense(1),
    ]
    net = keras.Sequential(layers)
    net.compile(keras.optimizers.SGD(0.5), "mse")
    return net


def trained(synchronized, distributed):
    """The weights after two global batches of 64 (two optimizer steps and
    two updates of the statistics), and a prediction, which re-estimates
    the statistics from the layers' reference samples."""
    x, y = data()
    if mode == "jax":
        # The computation stays global; XLA shards the batch and inserts
        # the reductions, so the statistics span both devices.
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=jax.devices())
            if distributed else None
        )
        net = model(synchronized)
    elif distributed:
        with strategy.scope():
            net = model(synchronized)
    else:
        net = model(synchronized)
    if mode != "worker" or not distributed:
        net.fit(x, y, batch_size=GLOBAL_BATCH, shuffle=False, verbose=0)
        net.predict(x[:16], batch_size=16, verbose=0)
    else:
        custom_loop(net, x, y)
        net(x[:16], training=False)
    return [(w.name, w.numpy()) for w in net.weights]


def custom_loop(net, x, y):
    """Keras 3's fit() does not run under MultiWorkerMirroredStrategy
    (keras-team/keras#20585), so the workers train with their own loop;
    worker i takes the i-th half of each global batch."""
    local = GLOBAL_BATCH // strategy.num_replicas_in_sync

    def shard(context):
        start = context.input_pipeline_id * local
        rows = np.concatenate(
            [np.arange(b + start, b + start + local)
             for b in range(0, len(x), GLOBAL_BATCH)]
        )
        return tf.data.Dataset.from_tensor_slices((x[rows], y[rows])).batch(
            local
        )

    batches = strategy.distribute_datasets_from_function(shard)

    @tf.function
    def train_step(xb, yb):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                error = tf.square(net(xb, training=True) - yb)
                loss = tf.reduce_sum(error) / GLOBAL_BATCH
            grads = tape.gradient(loss, net.trainable_weights)
            net.optimizer.apply_gradients(zip(grads, net.trainable_weights))

        strategy.run(replica_step, args=(xb, yb))

    for xb, yb in batches:
        train_step(xb, yb)


def gaps(reference, other):
    """The largest absolute difference per kind of weight."""
    out = {"trainable": 0.0, "statistics": 0.0}
    for (name, value), (_, other_value) in zip(reference, other):
        if name == "moving_count":
            continue
        kind = "statistics" if name.startswith("moving_") else "trainable"
        gap = float(np.max(np.abs(value - other_value)))
        out[kind] = max(out[kind], gap)
    return out


def main():
    out_path = sys.argv[-1]
    if mode == "worker" and index != 0:
        trained(True, True)
        trained(False, True)
        return
    if mode == "jax":
        report = {
            "replicas": len(jax.devices()),
            "data_parallel": gaps(trained(False, False), trained(False, True)),
        }
        with open(out_path, "w") as f:
            json.dump(report, f)
        return
    distributed = {sync: trained(sync, True) for sync in (True, False)}
    reference = trained(False, False)
    report = {
        "replicas": strategy.num_replicas_in_sync,
        "synchronized": gaps(reference, distributed[True]),
        "local": gaps(reference, distributed[False]),
    }
    with open(out_path, "w") as f:
        json.dump(report, f)


main()
