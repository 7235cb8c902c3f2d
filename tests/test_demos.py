"""The sales demos run end to end, in R and in Python, and agree.

Short settings (2 epochs, 4 units, 7-day windows, 2 seeds) keep this to
two minutes; the README's figures come from the full run.
"""

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest

ROOT = Path(__file__).resolve().parent.parent
SHORT = ["--epochs", "2", "--patience", "1", "--units", "4", "--lookback", "7",
         "--seeds", "2"]
MODELS = ["LSTM", "LSTM + BatchNormalization", "BN-LSTM", "Same weekday last week"]

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the demos train on TensorFlow, the backend R uses")


def run_demo(command, output, env=None):
    result = subprocess.run(
        [*command, *SHORT, "--output", str(output)], capture_output=True, text=True,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    with open(output / "results.csv") as f:
        rows = list(csv.DictReader(f))
    with open(output / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    for plot in ("validation_loss.png", "test_forecast.png"):
        assert (output / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    check_table(rows, runs)
    return result.stdout, rows


def check_table(rows, runs):
    """results.csv holds each model's means and spreads over the seeds of
    runs.csv, and the seconds to the LSTM's best validation loss."""
    assert [row["model"].split(" (")[0] for row in rows] == MODELS
    for row in rows:
        assert 0 < float(row["test_mae"]) <= float(row["test_rmse"])
    assert [int(row["seed"]) for row in runs] == [1, 1, 1, 2, 2, 2]
    for row in rows[:3]:
        mine = [r for r in runs if r["model"] == row["model"]]
        rmse = [float(r["test_rmse"]) for r in mine]
        assert float(row["test_rmse"]) == pytest.approx(sum(rmse) / 2)
        assert float(row["test_rmse_sd"]) == pytest.approx(
            abs(rmse[0] - rmse[1]) / math.sqrt(2))
        assert 1 <= float(row["epochs_run"]) <= 2
        assert math.isfinite(float(row["seconds_per_epoch"]))
        assert int(row["seeds"]) == 2
    # The LSTM reaches its own best validation loss, at its best epoch.
    lstm = rows[0]
    assert lstm["seeds_reaching_target"] == "2"
    assert 0 < float(lstm["seconds_to_target"]) <= 2 * float(
        lstm["seconds_per_epoch"]) + 1


@pytest.fixture(scope="module")
def python_demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("python-demo")
    return run_demo([sys.executable, str(ROOT / "inst" / "examples" / "sales_forecast.py")], output)


def test_python_demo_prints_and_writes_its_table(python_demo):
    stdout, rows = python_demo
    assert "Epoch 2/2" in stdout and "errors in units sold" in stdout
    assert "± sd over 2 seeds" in stdout


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_demo_runs_and_agrees_with_python(python_demo, r_library, tmp_path):
    stdout, rows = run_demo(
        ["Rscript", str(ROOT / "inst" / "examples" / "sales_forecast.R")], tmp_path,
        env={"R_LIBS": str(r_library), "RETICULATE_PYTHON": sys.executable},
    )
    assert "Epoch 2/2" in stdout and "errors in units sold" in stdout
    assert "± sd over 2 seeds" in stdout
    # The same windows, seeds and models: the same forecasts, to float32 noise.
    for r_row, py_row in zip(rows, python_demo[1]):
        for key in ("test_rmse", "test_mae"):
            assert float(r_row[key]) == pytest.approx(float(py_row[key]), rel=1e-3)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_demo_rejects_unknown_options(r_library):
    result = subprocess.run(
        ["Rscript", str(ROOT / "inst" / "examples" / "sales_forecast.R"), "--epoch", "3"],
        capture_output=True, text=True,
        env=dict(os.environ, R_LIBS=str(r_library), RETICULATE_PYTHON=sys.executable),
    )
    assert result.returncode != 0
    assert "Unknown option --epoch; known: --epochs" in result.stderr
