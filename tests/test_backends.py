"""The reference, behaviour, serialization, statistics and mixed-precision
suites on JAX and PyTorch.

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
    "test_mixed_precision.py",
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
