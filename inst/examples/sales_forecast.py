"""Forecasting daily sales from Python: the R demo's three models, in Keras.

A stacked LSTM, the same with BatchNormalization between its layers, and
the same stack of BNLSTM layers, trained on the same windows with the same
early stopping and seeds. Prints a table of test errors in sales units and
writes two PNG plots: validation loss per epoch, and forecasts against
actual sales over the test period.

    python inst/examples/sales_forecast.py [--epochs 40] [--output sales-demo-py]
"""

import argparse
import time
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pybnlstm import BNLSTM, RecomputeStatistics, prepare_forecast_data  # noqa: E402

SALES = Path(__file__).resolve().parents[1] / "extdata" / "daily_sales.csv"
LABELS = {
    "lstm": "LSTM",
    "lstm_batchnorm": "LSTM + BatchNormalization",
    "bn_lstm": "BN-LSTM (pybnlstm.BNLSTM)",
}
COLORS = {"lstm": "#1b9e77", "lstm_batchnorm": "#d95f02", "bn_lstm": "#7570b3"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--lookback", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default="sales-demo-py")
    return parser.parse_args()


def build_model(kind, input_shape, args):
    """The three models differ only in their recurrent layers."""
    keras.utils.set_random_seed(args.seed)
    recurrent = BNLSTM if kind == "bn_lstm" else keras.layers.LSTM
    layers = [
        keras.Input(input_shape),
        recurrent(args.units, return_sequences=True, dropout=0.1),
    ]
    if kind == "lstm_batchnorm":
        layers.append(keras.layers.BatchNormalization())
    layers += [recurrent(args.units, dropout=0.1), keras.layers.Dense(1)]
    model = keras.Sequential(layers, name=kind)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


def train(kind, data, args):
    print(f"\n== {LABELS[kind]}", flush=True)
    model = build_model(kind, data.train.x.shape[1:], args)
    callbacks = [
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=args.patience, restore_best_weights=True
        )
    ]
    if kind == "bn_lstm":
        # After early stopping, so that the restored weights get their own
        # population statistics.
        callbacks.append(RecomputeStatistics(data.train.x, batch_size=args.batch_size, verbose=0))
    started = time.perf_counter()
    history = model.fit(
        data.train.x,
        data.train.y,
        validation_data=(data.validation.x, data.validation.y),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - started
    forecast = data.inverse_transform(model.predict(data.test.x, batch_size=256, verbose=0))
    return {
        "forecast": forecast.ravel(),
        "val_loss": np.array(history.history["val_loss"]),
        "seconds": seconds,
    }


def errors(forecast, actual):
    return {
        "test_rmse": float(np.sqrt(np.mean((forecast - actual) ** 2))),
        "test_mae": float(np.mean(np.abs(forecast - actual))),
    }


def main():
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    sales = pd.read_csv(SALES, parse_dates=["date"])
    data = prepare_forecast_data(
        sales,
        "sales",
        features=["sales", "price", "promotion", "holiday"],
        known_ahead=["price", "promotion", "holiday"],
        lookback=args.lookback,
        train_end="2016-12-31",
        validation_end="2017-06-30",
    )
    print(
        f"Windows of {args.lookback} days: {len(data.train)} training, "
        f"{len(data.validation)} validation, {len(data.test)} test"
    )

    runs = {kind: train(kind, data, args) for kind in LABELS}
    actual = data.inverse_transform(data.test.y)
    rows = []
    for kind, run in runs.items():
        epochs = len(run["val_loss"])
        rows.append(
            {
                "model": LABELS[kind],
                **errors(run["forecast"], actual),
                "val_loss_epoch_5": float(run["val_loss"][4]) if epochs >= 5 else np.nan,
                "best_epoch": int(run["val_loss"].argmin()) + 1,
                "epochs_run": epochs,
                "best_val_loss": float(run["val_loss"].min()),
                "seconds_per_epoch": run["seconds"] / epochs,
            }
        )
    # A forecaster to beat: the sales of the same weekday a week earlier.
    week_before = sales.set_index("date").sales.reindex(
        pd.DatetimeIndex(data.test.dates) - pd.Timedelta(days=7)
    )
    rows.append({"model": "Same weekday last week", **errors(week_before.to_numpy(), actual)})
    # Whole epochs stay whole numbers beside the naive row's blanks.
    table = pd.DataFrame(rows).astype({"best_epoch": "Int64", "epochs_run": "Int64"})
    table.to_csv(output / "results.csv", index=False)
    print(f"\nTest period ({len(actual)} days), errors in units sold:")
    print(table.round(3).to_string(index=False, na_rep=""))

    fig, ax = plt.subplots(figsize=(8, 5))
    for kind, run in runs.items():
        epochs = np.arange(1, len(run["val_loss"]) + 1)
        ax.plot(epochs, run["val_loss"], color=COLORS[kind], lw=2, label=LABELS[kind])
        best = run["val_loss"].argmin()
        ax.plot(epochs[best], run["val_loss"][best], "o", color=COLORS[kind])
    ax.set(yscale="log", xlabel="epoch", ylabel="validation MSE (scaled sales, log)",
           title="Validation loss per epoch")
    ax.legend(frameon=False)
    fig.savefig(output / "validation_loss.png", dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(data.test.dates, actual, color="0.2", lw=2, label="actual")
    for kind, run in runs.items():
        ax.plot(data.test.dates, run["forecast"], color=COLORS[kind], lw=1.2, label=LABELS[kind])
    ax.set(ylabel="units sold", title="Test period: forecast one day ahead vs actual sales")
    ax.legend(frameon=False, loc="upper left")
    fig.savefig(output / "test_forecast.png", dpi=110, bbox_inches="tight")
    print(f"\nWrote {output / 'results.csv'}, {output / 'validation_loss.png'} and "
          f"{output / 'test_forecast.png'}")


if __name__ == "__main__":
    main()
