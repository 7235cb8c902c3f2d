import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import pybnlstm  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-5)


def to_np(value):
    """Any backend's tensor (or structure of them) as NumPy arrays."""
    return keras.tree.map_structure(keras.ops.convert_to_numpy, value)


def assert_close(actual, desired, **kwargs):
    np.testing.assert_allclose(to_np(actual), to_np(desired), **kwargs)


def assert_equal(actual, desired):
    np.testing.assert_array_equal(to_np(actual), to_np(desired))


def randomize(layer, seed=0):
    """Gives every weight of a built BNLSTM's cell a random, non-default
    value, so that no term of the equations can hide behind an
    initializer."""
    rng = np.random.default_rng(seed)
    for v in layer.cell.weights:
        shape = tuple(v.shape)
        if v.name == "moving_count":
            value = rng.integers(0, 4, shape)
        elif v.name.startswith("moving_variance"):
            value = rng.uniform(0.2, 2.0, shape)
        elif v.name.startswith("gamma"):
            value = rng.uniform(0.3, 1.5, shape)
        else:
            value = rng.normal(0.0, 0.5, shape)
        v.assign(value.astype("float32"))
    return layer


def built_layer(input_shape=(6, 5, 3), seed=0, **kwargs):
    kwargs.setdefault("units", 4)
    layer = pybnlstm.BNLSTM(**kwargs)
    layer.build(input_shape)
    return randomize(layer, seed)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(scope="session")
def r_library(tmp_path_factory):
    """This checkout's R package, installed into a library of its own."""
    import subprocess
    from pathlib import Path

    library = tmp_path_factory.mktemp("Rlib")
    root = Path(__file__).resolve().parent.parent
    subprocess.run(["R", "CMD", "INSTALL", "--no-test-load", "-l",
                    str(library), str(root)], check=True,
                   capture_output=True)
    return library


# The tiers, by file (pyproject.toml registers the markers): `-m fast` is
# the math against the reference, the layer's contract and the padding;
# `-m tooling` the tests of the benchmarks, the demos, the docs and the R
# package's build.
FAST = {"test_math.py", "test_layer.py", "test_padding.py", "test_step.py"}
TOOLING = {"test_benchmark.py", "test_demos.py", "test_docs.py",
           "test_r_install.py"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.path.name in FAST:
            item.add_marker(pytest.mark.fast)
        if item.path.name in TOOLING:
            item.add_marker(pytest.mark.tooling)
