"""Batch statistics across devices: under tf.distribute two replicas of
32 must train exactly as one device with batches of 64 when
`synchronized=True`, and must not without it; under JAX's DataParallel
they must, with no option. Each run starts fresh processes (see
`distributed_run.py`)."""

import importlib.util
import json
import socket
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import pybnlstm

HERE = Path(__file__).parent
SCRIPT = HERE / "distributed_run.py"

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="tf.distribute needs the TensorFlow backend",
)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [str(s.getsockname()[1]) for s in sockets]
    for s in sockets:
        s.close()
    return ports


def check_report(path):
    report = json.loads(Path(path).read_text())
    assert report["replicas"] == 2
    # Two SGD steps and two statistic updates with masked, unevenly scaled
    # inputs: synchronized replicas end where one device ends.
    assert report["synchronized"]["trainable"] < 1e-5
    assert report["synchronized"]["statistics"] < 1e-4
    # Replicas that normalize their own halves end elsewhere.
    assert report["local"]["trainable"] > 1e-3
    assert report["local"]["statistics"] > 1e-2


def test_mirrored_strategy_synchronizes_statistics(tmp_path):
    out = tmp_path / "mirrored.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "mirrored", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    check_report(out)


def test_multi_worker_strategy_synchronizes_statistics(tmp_path):
    out = tmp_path / "multiworker.json"
    ports = free_ports(2)
    workers = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), "worker", str(i), *ports,
             str(out)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in (1, 0)
    ]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-4000:]
    check_report(out)


def test_jax_data_parallel_spans_both_devices(tmp_path):
    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax is not installed")
    out = tmp_path / "jax.json"
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "jax", str(out)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(out.read_text())
    assert report["replicas"] == 2
    assert report["data_parallel"]["trainable"] < 1e-5
    assert report["data_parallel"]["statistics"] < 1e-4


def test_synchronized_is_checked_and_round_trips():
    with pytest.raises(TypeError, match="`synchronized`.*True or False"):
        pybnlstm.BNLSTM(4, synchronized="yes")
    layer = pybnlstm.BNLSTM(4, synchronized=True)
    assert layer.synchronized is True
    clone = pybnlstm.BNLSTM.from_config(layer.get_config())
    assert clone.synchronized is True


def test_synchronized_changes_nothing_on_one_device():
    import numpy as np

    x = np.random.RandomState(0).normal(size=(16, 5, 3)).astype("float32")
    outputs = []
    for synchronized in (False, True):
        keras.utils.set_random_seed(1)
        layer = pybnlstm.BNLSTM(6, synchronized=synchronized)
        outputs.append(keras.ops.convert_to_numpy(layer(x, training=True)))
    np.testing.assert_allclose(outputs[0], outputs[1], atol=1e-6)
