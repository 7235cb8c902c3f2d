"""The reference, behaviour, serialization, statistics and mixed-precision
suites on JAX and PyTorch, and the layer on them without TensorFlow.

Keras picks its backend once per process, so each backend runs the other
test files in a fresh interpreter.
"""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import keras
import pytest

HERE = Path(__file__).parent
SUITES = [
    "test_math.py",
    "test_layer.py",
    "test_serialization.py",
    "test_statistics.py",
    "test_refresh.py",
    "test_padding.py",
    "test_mixed_precision.py",
    "test_keras_harness.py",
    "test_drop_in_weights.py",
    "test_everyday_flows.py",
]


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_suites_pass_on_backend(backend):
    if keras.backend.backend() != "tensorflow":
        pytest.skip("run from the TensorFlow process only")
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    env = dict(os.environ, KERAS_BACKEND=backend)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         *SUITES],
        cwd=HERE, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout.splitlines()[-1]


# Run in a fresh interpreter where `import tensorflow` and `import pandas`
# fail, as they do where only the layer's own requirements and JAX or
# PyTorch are installed (a `None` in `sys.modules` is how Python marks a
# module as absent).
WITHOUT_TENSORFLOW = """
import sys

sys.modules["tensorflow"] = sys.modules["pandas"] = None
import keras
import numpy as np

import pybnlstm

model = keras.Sequential([keras.Input((5, 3)), pybnlstm.BNLSTM(4), keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
x = np.random.default_rng(0).normal(size=(8, 5, 3)).astype("float32")
history = model.fit(x, x[:, -1, :1], epochs=2, verbose=0)
prediction = model.predict(x, verbose=0)
assert np.isfinite(history.history["loss"]).all() and prediction.shape == (8, 1)
try:
    pybnlstm.prepare_forecast_data
except ImportError as error:
    assert "pip install 'pybnlstm[forecast]'" in str(error), error
else:
    raise AssertionError("the forecasting helpers imported without pandas")
print("trained without tensorflow")
"""


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_trains_without_tensorflow(backend):
    if importlib.util.find_spec(backend) is None:
        pytest.skip(f"{backend} is not installed")
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW],
        env=dict(os.environ, KERAS_BACKEND=backend), capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained without tensorflow" in result.stdout
