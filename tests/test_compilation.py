"""One XLA compilation per loop and sequence length, whatever the batch
size: after the first epoch of `fit()`, a partial last batch, validation,
`evaluate()` and `predict()` at new batch sizes compile nothing, but for
an inference batch of at most half the training batch, which runs at
the power of two at or above its size, once per power of two.

XLA writes each module it compiles to `--xla_dump_to`; the test counts
them in a fresh process, since compilations are cached per process."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import pytest

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the compiled loops are TensorFlow's")

SCRIPT = textwrap.dedent("""
    import json, os, sys
    dump = sys.argv[1]
    os.environ["XLA_FLAGS"] = f"--xla_dump_to={dump}"
    import numpy as np, keras, pybnlstm

    def compiled():
        names = {}
        for name in os.listdir(dump) if os.path.isdir(dump) else []:
            if name.startswith("module_"):
                names[name.split(".")[0]] = name.split(".")[1]
        return sorted(names.values())

    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 6, 3)).astype("float32")
    y = x[:, -1, :1]
    model = keras.Sequential([
        keras.Input((6, 3)),
        pybnlstm.BNLSTM(5, return_sequences=True),
        pybnlstm.BNLSTM(4),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    # 90 training windows: batches of 16, and a last one of 10.
    model.fit(x, y, batch_size=16, epochs=1, validation_split=0.1,
              verbose=0)
    first = compiled()
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.1,
              verbose=0)
    model.fit(x[:37], y[:37], batch_size=16, epochs=1, verbose=0)
    trained = compiled()

    def infer():
        for n in (37, 5, 100):
            model.predict(x[:n], verbose=0)
        model.predict(x, batch_size=7, verbose=0)
        model.evaluate(x[:9], y[:9], verbose=0)

    infer()
    inferred = compiled()
    infer()
    print(json.dumps({"first_epoch": first, "trained": trained[len(first):],
                      "inferred": inferred[len(trained):],
                      "again": compiled()[len(inferred):]}))
""")


def test_later_batch_sizes_compile_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "xla")],
        capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # Per layer: the forward and backward training loops, the inference
    # loop and the loop that re-estimates the statistics.
    kinds = sorted(name.split("_")[2] for name in report["first_epoch"])
    assert kinds == ["backward"] * 2 + ["forward"] * 2 + ["run"] * 4
    assert report["trained"] == []
    # predict()'s batches of 32 rows run in chunks of the training batch
    # (16), as do 9 rows; its last batches of 5 rows (chunks of 8) and 4
    # rows (of 100), batch_size=7's batches (8) and their last 2 rows (2)
    # compile a loop each per layer: for 8, 4 and 2 rows.
    inferred = sorted(name.split("_")[2] for name in report["inferred"])
    assert inferred == ["run"] * 6
    assert report["again"] == []


def test_inference_is_traced_once_per_layer(monkeypatch):
    """Each function Keras traces for inference (validation, `predict()`
    and its partial last batch, `evaluate()`) calls one traced inference
    pass per layer instead of building the pass again."""
    import numpy as np

    import pybnlstm

    passes = []
    sequence_pass = pybnlstm.BNLSTM._sequence_pass

    def counted(self, sequences, initial_state, mask, training, batch_norm):
        if not batch_norm:
            passes.append(self.name)
        return sequence_pass(self, sequences, initial_state, mask, training,
                             batch_norm)

    monkeypatch.setattr(pybnlstm.BNLSTM, "_sequence_pass", counted)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6, 3)).astype("float32")
    y = x[:, -1, :1]
    model = keras.Sequential([
        keras.Input((6, 3)),
        pybnlstm.BNLSTM(5, return_sequences=True, name="first"),
        pybnlstm.BNLSTM(4, name="second"),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    traces = []
    for step in ("test_step", "predict_step"):
        original = getattr(model, step)

        def traced(data, original=original, step=step):
            traces.append(step)
            return original(data)

        setattr(model, step, traced)
    model.fit(x, y, batch_size=16, epochs=2, validation_split=0.2,
              verbose=0)
    model.predict(x[:37], batch_size=32, verbose=0)
    model.evaluate(x[:9], y[:9], verbose=0)
    # Keras traced validation once and predict() twice (32 rows, then 5).
    assert traces.count("predict_step") >= 2 and "test_step" in traces
    assert sorted(passes) == ["first", "second"]


def test_stateless_call_uses_the_values_it_is_given():
    """`stateless_call` reads the variables' values from its arguments:
    the traced inference pass, made with the layer's own variables, must
    not stand in for them, nor keep the given values afterwards."""
    import numpy as np

    import pybnlstm

    x = np.random.default_rng(0).normal(size=(4, 5, 3)).astype("float32")
    layer = pybnlstm.BNLSTM(3)
    before = keras.ops.convert_to_numpy(layer(x))
    assert np.abs(before).max() > 0
    zeros = [keras.ops.zeros_like(v) for v in layer.trainable_variables]
    outputs, _ = layer.stateless_call(
        zeros, [v.value for v in layer.non_trainable_variables], x)
    # With every weight zero (gamma_c and beta_c included), h is 0.
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(outputs), 0.0)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(x)),
                                  before)
