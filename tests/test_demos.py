"""The sales demos run end to end, in R and in Python, and agree.

Short settings (2 epochs, 4 units, 7-day windows) keep this to a few
minutes; the README's figures come from the full run. The seasonal-naive
row and the actual sales are checked against pandas on the raw CSV.
"""

import csv
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEMOS = ROOT / "inst" / "examples"
SHORT = ["--epochs", "2", "--patience", "1", "--units", "4", "--lookback", "7"]
MODELS = ["LSTM", "LSTM + BatchNormalization", "BN-LSTM", "Same weekday last week"]

pytestmark = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the demos train on TensorFlow, the backend R uses")


def run_demo(command, output, options=("--seeds", "2"), env=None):
    result = subprocess.run(
        [*command, *SHORT, *options, "--output", str(output)], capture_output=True,
        text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})),
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    with open(output / "results.csv") as f:
        rows = list(csv.DictReader(f))
    with open(output / "runs.csv") as f:
        runs = list(csv.DictReader(f))
    for plot in ("validation_loss.png", "test_forecast.png"):
        assert (output / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return result.stdout, rows, runs


def python_demo_command():
    return [sys.executable, str(DEMOS / "sales_forecast.py")]


def r_demo(command_options, output, r_library, options=("--seeds", "2")):
    return run_demo(
        ["Rscript", str(DEMOS / "sales_forecast.R"), *command_options], output,
        options, env={"R_LIBS": str(r_library), "RETICULATE_PYTHON": sys.executable},
    )


def check_table(rows, runs, days):
    """results.csv holds each model's means and spreads over the seeds of
    runs.csv, errors by day ahead, and the seconds to the LSTM's best
    validation loss."""
    assert [row["model"].split(" (")[0] for row in rows] == MODELS
    for row in rows:
        assert 0 < float(row["test_mae"]) <= float(row["test_rmse"])
        by_day = [float(row[f"test_mae_day_{h}"]) for h in range(1, days + 1)]
        # Every day ahead has as many windows: the overall MAE is their mean.
        assert np.mean(by_day) == pytest.approx(float(row["test_mae"]), rel=1e-6)
        assert f"test_mae_day_{days + 1}" not in row
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


def retail_reference(lookback=7, days=7):
    """The test windows of the retail demo cut from the raw CSV by hand:
    per product, every calendar day from its first sale to its last, zero
    units where it sold nothing; a window belongs to the test period when
    the last day it forecasts is after 2011-09-30. Gives the actual units
    and the units a week before, one row per window, one column per day."""
    sales = pd.read_csv(DEMOS.parent / "extdata" / "online_retail_daily.csv",
                        parse_dates=["date"], dtype={"product": str})
    actual, naive = [], []
    for _, one in sales.groupby("product", sort=False):
        units = one.set_index("date").units
        units = units.reindex(pd.date_range(units.index.min(), units.index.max()),
                              fill_value=0)
        for start in range(len(units) - lookback - days + 1):
            target = units.index[start + lookback:start + lookback + days]
            if target[-1] > pd.Timestamp("2011-09-30"):
                actual.append(units.loc[target].to_numpy())
                naive.append(units.reindex(target - pd.Timedelta(days=7),
                                           fill_value=0).to_numpy())
    return np.array(actual, float), np.array(naive, float)


def test_retail_naive_row_matches_pandas(python_demo):
    actual, naive = retail_reference()
    row = python_demo[1][3]
    difference = naive - actual
    assert float(row["test_rmse"]) == pytest.approx(np.sqrt(np.mean(difference ** 2)))
    for h in range(7):
        assert float(row[f"test_mae_day_{h + 1}"]) == pytest.approx(
            np.abs(difference[:, h]).mean())
    assert f"Test period ({len(actual)} windows)" in python_demo[0]


@pytest.fixture(scope="module")
def python_demo(tmp_path_factory):
    output = tmp_path_factory.mktemp("python-demo")
    stdout, rows, runs = run_demo(python_demo_command(), output)
    check_table(rows, runs, days=7)
    return stdout, rows


def test_python_demo_prints_and_writes_its_tables(python_demo):
    stdout, rows = python_demo
    assert "Epoch 2/2" in stdout and "errors in units sold" in stdout
    assert "± sd over 2 seeds" in stdout
    assert "Online Retail II, 20 products" in stdout
    assert "Mean absolute error by day ahead" in stdout and "day 7" in stdout


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_demo_runs_and_agrees_with_python(python_demo, r_library, tmp_path):
    stdout, rows, runs = r_demo([], tmp_path, r_library)
    check_table(rows, runs, days=7)
    assert "Epoch 2/2" in stdout and "errors in units sold" in stdout
    assert "± sd over 2 seeds" in stdout and "day 7" in stdout
    # The same windows, seeds and models: the same forecasts, to float32 noise.
    for r_row, py_row in zip(rows, python_demo[1]):
        for key in ["test_rmse", "test_mae", *(f"test_mae_day_{h}" for h in range(1, 8))]:
            assert float(r_row[key]) == pytest.approx(float(py_row[key]), rel=1e-3)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_synthetic_data_one_day_ahead_agrees(r_library, tmp_path):
    """--data synthetic: the generated series, one day ahead, in both."""
    options = ("--data", "synthetic", "--seeds", "1")
    python = run_demo(python_demo_command(), tmp_path / "py", options)
    r = r_demo([], tmp_path / "r", r_library, options)
    sales = pd.read_csv(DEMOS.parent / "extdata" / "daily_sales.csv", parse_dates=["date"])
    units = sales.set_index("date").sales
    test = units[units.index > "2017-06-30"]
    naive = units.reindex(test.index - pd.Timedelta(days=7)).to_numpy()
    for stdout, rows, _ in (python, r):
        assert "Generated daily sales" in stdout
        assert [row["model"].split(" (")[0] for row in rows] == MODELS
        assert "test_mae_day_2" not in rows[0]
        assert float(rows[3]["test_mae"]) == pytest.approx(
            np.abs(naive - test.to_numpy()).mean())
    for r_row, py_row in zip(r[1], python[1]):
        assert float(r_row["test_mae_day_1"]) == pytest.approx(
            float(py_row["test_mae_day_1"]), rel=1e-3)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_demo_rejects_unknown_options(r_library):
    result = subprocess.run(
        ["Rscript", str(DEMOS / "sales_forecast.R"), "--epoch", "3"],
        capture_output=True, text=True,
        env=dict(os.environ, R_LIBS=str(r_library), RETICULATE_PYTHON=sys.executable),
    )
    assert result.returncode != 0
    assert "Unknown option --epoch; known: --data, --epochs" in result.stderr


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_r_demo_rejects_unknown_data(r_library):
    result = subprocess.run(
        ["Rscript", str(DEMOS / "sales_forecast.R"), "--data", "walmart"],
        capture_output=True, text=True,
        env=dict(os.environ, R_LIBS=str(r_library), RETICULATE_PYTHON=sys.executable),
    )
    assert result.returncode != 0
    assert "Option --data takes retail or synthetic, got walmart" in result.stderr
