"""Forecasting daily sales from Python: the R demo's three models, in Keras.

A stacked LSTM, the same with BatchNormalization between its layers, and
the same stack of BNLSTM layers, trained on the same windows with the same
early stopping, for one seed or several (--seeds). Prints a table of test
errors in sales units, with the seconds each model took to reach the plain
LSTM's best validation loss, and writes results.csv (means and standard
deviations over seeds), runs.csv (one row per model and seed) and two PNG
plots: validation loss per epoch, and forecasts against actual sales over
the test period.

    python inst/examples/sales_forecast.py [--epochs 40] [--seeds 1]
        [--output sales-demo-py]
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

from pybnlstm import BNLSTM, prepare_forecast_data  # noqa: E402

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
    parser.add_argument("--seeds", type=int, default=1,
                        help="how many seeds, from --seed on")
    parser.add_argument("--output", default="sales-demo-py")
    return parser.parse_args()


def build_model(kind, input_shape, seed, args):
    """The three models differ only in their recurrent layers."""
    keras.utils.set_random_seed(seed)
    # The plain swap: keras.layers.LSTM becomes BNLSTM, nothing else.
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


class Clock(keras.callbacks.Callback):
    """Seconds from the start of fit() to the end of each epoch, validation
    included: the wall clock a user waits for each validation loss."""

    def on_train_begin(self, logs=None):
        self.started, self.elapsed = time.perf_counter(), []

    def on_epoch_end(self, epoch, logs=None):
        self.elapsed.append(time.perf_counter() - self.started)


def train(kind, data, seed, args):
    print(f"\n== {LABELS[kind]}, seed {seed}", flush=True)
    model = build_model(kind, data.train.x.shape[1:], seed, args)
    clock = Clock()
    callbacks = [
        clock,
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=args.patience, restore_best_weights=True
        ),
    ]
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
        "elapsed": np.array(clock.elapsed),
        "seconds": seconds,
    }


def errors(forecast, actual):
    return {
        "test_rmse": float(np.sqrt(np.mean((forecast - actual) ** 2))),
        "test_mae": float(np.mean(np.abs(forecast - actual))),
    }


def run_row(kind, seed, run, target, actual):
    """One model and seed; the target of the time column is the plain
    LSTM's best validation loss with the same seed."""
    epochs = len(run["val_loss"])
    reached = np.flatnonzero(run["val_loss"] <= target)
    return {
        "model": LABELS[kind],
        "seed": seed,
        **errors(run["forecast"], actual),
        "val_loss_epoch_5": float(run["val_loss"][4]) if epochs >= 5 else np.nan,
        "best_epoch": int(run["val_loss"].argmin()) + 1,
        "epochs_run": epochs,
        "best_val_loss": float(run["val_loss"].min()),
        "seconds_per_epoch": run["seconds"] / epochs,
        "seconds_to_target": float(run["elapsed"][reached[0]]) if len(reached) else np.nan,
    }


MEASURES = ["test_rmse", "test_mae", "val_loss_epoch_5", "best_epoch", "epochs_run",
            "best_val_loss", "seconds_per_epoch", "seconds_to_target"]


def summary(runs):
    """Means over seeds, and standard deviations (NaN with one seed); the
    time to target is averaged over the seeds that reached it."""
    grouped = runs.groupby("model", sort=False)
    table = grouped[MEASURES].mean()
    for column in ("test_rmse", "test_mae", "best_val_loss"):
        table[f"{column}_sd"] = grouped[column].std()
    table["seeds"] = grouped.size()
    table["seeds_reaching_target"] = grouped["seconds_to_target"].count()
    return table.reset_index()


def shown(table, seeds):
    def with_sd(column, digits, sd=True):
        means = table[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
        if not sd or seeds == 1:
            return means
        sds = table[f"{column}_sd"]
        return [m if pd.isna(s) else f"{m} ± {s:.{digits}f}" for m, s in zip(means, sds)]

    reached = [
        "" if pd.isna(n) else f"{'' if pd.isna(t) else f'{t:.1f}'} ({int(n)}/{int(k)})"
        for t, n, k in zip(table.seconds_to_target, table.seeds_reaching_target, table.seeds)
    ]
    return pd.DataFrame({
        "model": table.model,
        "test_rmse": with_sd("test_rmse", 2),
        "test_mae": with_sd("test_mae", 2),
        "val_loss_epoch_5": with_sd("val_loss_epoch_5", 3, sd=False),
        "best_epoch": with_sd("best_epoch", 1, sd=False),
        "epochs_run": with_sd("epochs_run", 1, sd=False),
        "best_val_loss": with_sd("best_val_loss", 3),
        "s_per_epoch": with_sd("seconds_per_epoch", 2, sd=False),
        "s_to_lstm_best": reached,
    })


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

    seeds = range(args.seed, args.seed + args.seeds)
    runs = {seed: {kind: train(kind, data, seed, args) for kind in LABELS} for seed in seeds}
    actual = data.inverse_transform(data.test.y)
    per_seed = pd.DataFrame([
        run_row(kind, seed, run, runs[seed]["lstm"]["val_loss"].min(), actual)
        for seed in seeds for kind, run in runs[seed].items()
    ])
    per_seed.to_csv(output / "runs.csv", index=False)
    # A forecaster to beat: the sales of the same weekday a week earlier.
    week_before = sales.set_index("date").sales.reindex(
        pd.DatetimeIndex(data.test.dates) - pd.Timedelta(days=7)
    )
    naive = pd.DataFrame([{"model": "Same weekday last week",
                           **errors(week_before.to_numpy(), actual)}])
    # Counts stay whole numbers beside the naive row's blanks.
    table = pd.concat([summary(per_seed), naive], ignore_index=True).astype(
        {"seeds": "Int64", "seeds_reaching_target": "Int64"})
    table.to_csv(output / "results.csv", index=False)
    spread = f" ± sd over {args.seeds} seeds" if args.seeds > 1 else ""
    print(f"\nTest period ({len(actual)} days), errors in units sold; mean{spread}:")
    print(shown(table, args.seeds).to_string(index=False))

    fig, ax = plt.subplots(figsize=(8, 5))
    for seed in seeds:
        for kind, run in runs[seed].items():
            epochs = np.arange(1, len(run["val_loss"]) + 1)
            ax.plot(epochs, run["val_loss"], color=COLORS[kind], lw=2,
                    label=LABELS[kind] if seed == args.seed else None)
            best = run["val_loss"].argmin()
            ax.plot(epochs[best], run["val_loss"][best], "o", color=COLORS[kind])
    ax.set(yscale="log", xlabel="epoch", ylabel="validation MSE (scaled sales, log)",
           title=f"Validation loss per epoch ({args.seeds} seed{'s' if args.seeds > 1 else ''})")
    ax.legend(frameon=False)
    fig.savefig(output / "validation_loss.png", dpi=110, bbox_inches="tight")

    fig, ax = plt.subplots(figsize=(11, 5))
    ax.plot(data.test.dates, actual, color="0.2", lw=2, label="actual")
    # The forecasts of the first seed.
    for kind, run in runs[args.seed].items():
        ax.plot(data.test.dates, run["forecast"], color=COLORS[kind], lw=1.2, label=LABELS[kind])
    ax.set(ylabel="units sold", title="Test period: forecast one day ahead vs actual sales")
    ax.legend(frameon=False, loc="upper left")
    fig.savefig(output / "test_forecast.png", dpi=110, bbox_inches="tight")
    print(f"\nWrote {output / 'results.csv'}, {output / 'runs.csv'}, "
          f"{output / 'validation_loss.png'} and {output / 'test_forecast.png'}")


if __name__ == "__main__":
    main()
