"""Every loop runs the one step of `pybnlstm.step`: the cell's step (the
layer's step-by-step loop, in training and in inference) and, on
TensorFlow, the compiled training, statistics and inference loops. Each
runs on random inputs, with and without a mask, against the NumPy
reference, with a spy on `step.step` that records which loop called it.
"""

import sys

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, built_layer
from reference import reference_for

from pybnlstm import _xla_loops
from pybnlstm import step as bn_lstm_step

# Where a loop's step is written: a caller's qualified name, and the loop.
CALLERS = {
    "BNLSTMCell.recurrence.<locals>.step": "cell",
    "_forward.<locals>.forward.<locals>.body": "compiled training",
    "statistics_recurrence.<locals>.run.<locals>.body": "compiled statistics",
    "inference_recurrence.<locals>.run.<locals>.body": "compiled inference",
}


@pytest.fixture
def loops(monkeypatch):
    """The loops that ran `step.step` (traced or called), as names."""
    seen = set()
    original = bn_lstm_step.step

    def spy(*args, **kwargs):
        frame = sys._getframe(1)
        for _ in range(3):
            seen.update(loop for name, loop in CALLERS.items()
                        if frame.f_code.co_qualname == name)
            frame = frame.f_back
        return original(*args, **kwargs)

    monkeypatch.setattr(bn_lstm_step, "step", spy)
    # The compiled loops are made once per configuration in a process:
    # made again here, they trace the spy.
    for made in (_xla_loops._forward, _xla_loops.statistics_recurrence,
                 _xla_loops.inference_recurrence, _xla_loops.training_recurrence):
        made.cache_clear()
    return seen


def some_masked():
    mask = np.ones((6, 5), dtype=bool)
    mask[0, 3:] = False
    mask[1, :2] = False
    return mask


def run_both_modes(layer, x, mask):
    """A training call, then an inference call (which re-estimates the
    statistics from the reference sample first), each against the
    reference with the weights it ran with."""
    trained = layer(x, mask=mask, training=True)
    want = reference_for(layer).run(x, training=True, mask=mask)
    for got, expected in zip(trained, want):
        assert_close(got, expected, **TOL)
    inferred = layer(x, mask=mask, training=False)
    # Read after the call: it re-estimated the statistics.
    want = reference_for(layer).run(x, training=False, mask=mask)
    for got, expected in zip(inferred, want):
        assert_close(got, expected, **TOL)


@pytest.mark.parametrize("masked", [False, True])
def test_the_step_by_step_loop_runs_the_cells_step(rng, loops, masked):
    layer = built_layer(return_sequences=True, return_state=True, use_xla=False)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    run_both_modes(layer, x, some_masked() if masked else None)
    assert loops == {"cell"}


@pytest.mark.skipif(keras.backend.backend() != "tensorflow",
                    reason="the compiled loops are TensorFlow's")
@pytest.mark.parametrize("masked", [False, True])
def test_the_compiled_loops_run_the_same_step(rng, loops, masked):
    layer = built_layer(return_sequences=True, return_state=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    run_both_modes(layer, x, some_masked() if masked else None)
    assert loops == {"compiled training", "compiled statistics", "compiled inference"}
