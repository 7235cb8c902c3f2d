"""The speed benchmark runs and reports what it promises (no timing checks)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_speed_benchmark_writes_its_table(tmp_path):
    out = tmp_path / "speed.json"
    csv = tmp_path / "speed.csv"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--quick", "--steps", "1",
         "--repeats", "1", "--memory", "--json", str(out), "--csv", str(csv)],
        check=True, capture_output=True, text=True,
    )
    assert "Median BNLSTM / LSTM ratio over the grid: fit" in result.stdout
    report = json.loads(out.read_text())
    (row,) = report["rows"]
    assert (row["batch"], row["timesteps"], row["units"], row["features"]) == (32, 50, 64, 3)
    for key in ("fit", "predict"):
        assert row[f"{key}_lstm_ms"] > 0 and row[f"{key}_bnlstm_ms"] > 0
        assert row[f"{key}_ratio"] == pytest.approx(row[f"{key}_bnlstm_ms"] / row[f"{key}_lstm_ms"])
    assert row["fit_loop_ratio"] == pytest.approx(row["fit_loop_ms"] / row["fit_lstm_ms"])
    for key in ("memory", "warm_memory"):
        assert row[f"{key}_lstm_mib"] >= 0 and row[f"{key}_bnlstm_mib"] >= 0
    assert row["memory_loop_ratio"] == pytest.approx(
        row["memory_loop_mib"] / row["memory_lstm_mib"])
    assert set(report["median_ratios"]) == {
        f"{key}_ratio" for key in
        ("fit", "fit_loop", "predict", "memory", "memory_loop", "warm_memory")}
    assert row["first_predict_lstm_ms"] > 0 and row["first_predict_bnlstm_ms"] > 0
    assert csv.read_text().splitlines()[0].startswith("batch,timesteps,units,features")


def test_speed_benchmark_times_padded_data(tmp_path):
    out = tmp_path / "speed.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--shape", "4,6,3,2",
         "--steps", "2", "--repeats", "1", "--padded", "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert "pad: padded data (pre-padded, masked)" in result.stdout
    (row,) = json.loads(out.read_text())["rows"]
    for layer in ("lstm", "bnlstm"):
        for key in ("fit", "predict"):
            assert row[f"{key}_padded_{layer}_ratio"] == pytest.approx(
                row[f"{key}_padded_{layer}_ms"] / row[f"{key}_{layer}_ms"])


def test_speed_benchmark_times_given_shapes_on_another_backend(tmp_path):
    pytest.importorskip("jax")
    out = tmp_path / "speed.json"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--backend", "jax",
         "--shape", "4,3,2,1", "--shape", "2,5,3,2", "--steps", "2", "--repeats", "1",
         "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    report = json.loads(out.read_text())
    assert report["backend"] == "jax" and report["device"] == "CPU"
    assert [(r["batch"], r["timesteps"], r["units"], r["features"]) for r in report["rows"]] \
        == [(4, 3, 2, 1), (2, 5, 3, 2)]
    # use_xla only changes TensorFlow's training recurrence: no "loop" model.
    assert set(report["median_ratios"]) == {"fit_ratio", "predict_ratio"}


@pytest.mark.parametrize("script, option, value, message", [
    ("speed.py", "--shape", "32,50,64", "expected four positive integers"),
    ("speed.py", "--shape", "32,50,64,0", "expected four positive integers"),
    ("speed.py", "--shape", "32,50,x,3", "expected four positive integers"),
    ("first_fit.py", "--units", "0,3", "expected positive integers"),
    ("first_fit.py", "--units", "4,x", "expected positive integers"),
    ("first_fit.py", "--units", "", "expected positive integers"),
    ("latency.py", "--rows", "0", "expected positive integers"),
    ("latency.py", "--train-batch", "x", "expected positive integers"),
])
def test_benchmarks_name_a_bad_argument(script, option, value, message):
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), option, value],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert f"{option}: {message}" in result.stderr


def test_xla_memory_benchmark_reports_each_stage(tmp_path):
    out = tmp_path / "xla_memory.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "xla_memory.py"), "--shape", "2,3,2,1",
         "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert "batch 2, 3 steps, 2 units, 1 features" in result.stdout
    report = json.loads(out.read_text())
    assert report["shape"] == {"batch": 2, "timesteps": 3, "units": 2, "features": 1}
    assert [row["stage"] for row in report["stages"]] == ["trivial", "forward", "backward"]
    for row in report["stages"]:
        # Resident memory is the kernel's sum of its anonymous and file pages.
        assert row["resident"] == pytest.approx(row["anonymous"] + row["file"], abs=1.0)
    # Compiling for XLA holds memory; this shape's data alone is a few KiB.
    assert report["stages"][1]["resident"] > 1.0


def test_xla_memory_benchmark_rejects_a_bad_shape():
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "xla_memory.py"), "--shape", "2,3,2"],
        capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert "--shape: expected four positive integers" in result.stderr


def test_first_fit_benchmark_reports_each_phase(tmp_path):
    out = tmp_path / "first_fit.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "first_fit.py"), "--runs", "1",
         "--units", "3,2", "--samples", "30", "--timesteps", "4", "--features", "2",
         "--batch-size", "8", "--epochs", "1", "--predict", "5", "--jit", "true",
         "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert "BNLSTM / LSTM" in result.stdout
    assert "jit_compile=true" in result.stdout
    report = json.loads(out.read_text())
    assert report["args"]["units"] == [3, 2] and report["args"]["jit"] == "true"
    phases = ("first_batch", "first_epoch", "fit", "predict", "total")
    for layer in ("LSTM", "BNLSTM"):
        (run,) = report["runs"][layer]
        # Off by default on a CPU: the option reached Model.compile.
        assert run["jit_compile"] is True
        assert all(run[p] > 0 for p in phases)
        assert run["first_batch"] <= run["first_epoch"] <= run["fit"] < run["total"]
    for p in phases:
        assert report["ratios"][p] == pytest.approx(
            report["medians"]["BNLSTM"][p] / report["medians"]["LSTM"][p])



def test_latency_benchmark_reports_each_size(tmp_path):
    out = tmp_path / "latency.json"
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "latency.py"), "--train-batch", "8,16",
         "--rows", "1,3", "--timesteps", "4", "--features", "2", "--units", "3",
         "--calls", "3", "--json", str(out)],
        check=True, capture_output=True, text=True,
    )
    assert "median ms per predict_on_batch()" in result.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [(r["train_batch"], r["rows"]) for r in rows] == [
        (8, 1), (8, 3), (16, 1), (16, 3)]
    for row in rows:
        assert row["lstm_ms"] > 0 and row["bnlstm_ms"] > 0
        assert row["ratio"] == pytest.approx(row["bnlstm_ms"] / row["lstm_ms"])
