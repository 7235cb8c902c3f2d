"""Forecasting daily sales from Python: the R demo's three models, in Keras.

A stacked LSTM, the same with BatchNormalization between its layers, and
the same stack of BNLSTM layers, trained on the same windows with the same
early stopping, for one seed or several (--seeds). By default the data are
real: 20 products of a UK online retailer (Online Retail II), one global
model forecasting each product's next 7 days; --data synthetic forecasts
the bundled generated series one day ahead instead. Prints test errors in
units sold, overall and by day ahead, beside a seasonal-naive forecast
(the same weekday a week before), with the seconds each model took to reach
the plain LSTM's best validation loss, and writes results.csv (means and
standard deviations over seeds), runs.csv (one row per model and seed) and
two PNG plots: validation loss per epoch, and forecasts against actual
sales over the test period.

    python inst/examples/sales_forecast.py [--data retail] [--epochs 40]
        [--seeds 1] [--output sales-demo-py]
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

EXTDATA = Path(__file__).resolve().parents[1] / "extdata"
LABELS = {
    "lstm": "LSTM",
    "lstm_batchnorm": "LSTM + BatchNormalization",
    "bn_lstm": "BN-LSTM (pybnlstm.BNLSTM)",
}
NAIVE = "Same weekday last week"
COLORS = {"lstm": "#1b9e77", "lstm_batchnorm": "#d95f02", "bn_lstm": "#7570b3"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", choices=["retail", "synthetic"], default="retail")
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


def retail_data(lookback):
    """Real sales of 20 products, one model for all, a week ahead. A day
    without a row sold nothing, at the last price paid."""
    sales = pd.read_csv(EXTDATA / "online_retail_daily.csv", parse_dates=["date"],
                        dtype={"product": str})
    data = prepare_forecast_data(
        sales, "units", features=["units", "price"], key="product",
        lookback=lookback, horizon=list(range(1, 8)),
        train_end="2011-06-30", validation_end="2011-09-30",
        gaps={"units": "zero", "price": "previous"},
    )
    about = ("Online Retail II, 20 products, one global model, 7 days ahead: "
             "training up to 2011-06, validation 2011-07 to 2011-09, test after.")
    return sales, data, about, ["85123A", "22423", "84879"]


def synthetic_data(lookback):
    """The bundled generated series, one day ahead."""
    sales = pd.read_csv(EXTDATA / "daily_sales.csv", parse_dates=["date"])
    sales = sales.rename(columns={"sales": "units"})
    data = prepare_forecast_data(
        sales, "units", features=["units", "price", "promotion", "holiday"],
        known_ahead=["price", "promotion", "holiday"], lookback=lookback,
        train_end="2016-12-31", validation_end="2017-06-30",
    )
    about = ("Generated daily sales, 2008 to 2017, one day ahead: training up "
             "to 2016, validation the first half of 2017, test the second.")
    return sales, data, about, [None]


def as_matrix(values):
    """Windows by day ahead, whatever the horizon."""
    values = np.asarray(values)
    return values.reshape(len(values), -1)


def build_model(kind, input_shape, outputs, seed, args):
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
    layers += [recurrent(args.units, dropout=0.1), keras.layers.Dense(outputs)]
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
    y = as_matrix(data.train.y)
    model = build_model(kind, data.train.x.shape[1:], y.shape[1], seed, args)
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
        y,
        validation_data=(data.validation.x, as_matrix(data.validation.y)),
        epochs=args.epochs,
        batch_size=args.batch_size,
        callbacks=callbacks,
        verbose=2,
    )
    seconds = time.perf_counter() - started
    forecast = data.inverse_transform(
        model.predict(data.test.x, batch_size=256, verbose=0), key=data.test.key)
    return {
        "forecast": forecast,
        "val_loss": np.array(history.history["val_loss"]),
        "elapsed": np.array(clock.elapsed),
        "seconds": seconds,
    }


def seasonal_naive(sales, data):
    """Each forecast day's units a week before (zero on a day without a
    row); a week back is known for every horizon up to seven days."""
    dates = as_matrix(data.test.dates)
    one_series = np.zeros(len(sales), int)
    units = pd.Series(sales[data.target].to_numpy(), index=pd.MultiIndex.from_arrays(
        [sales[data.key] if data.key else one_series, sales.date]))
    keys = data.test.key if data.key else np.zeros(len(dates), int)
    week_before = pd.MultiIndex.from_arrays([
        np.repeat(keys, dates.shape[1]),
        pd.DatetimeIndex(dates.ravel()) - pd.Timedelta(days=7),
    ])
    return units.reindex(week_before).fillna(0).to_numpy().reshape(dates.shape)


def errors(forecast, actual):
    """RMSE and MAE over every window and day ahead, and MAE by day ahead."""
    difference = as_matrix(forecast) - as_matrix(actual)
    by_day = np.abs(difference).mean(axis=0)
    return {
        "test_rmse": float(np.sqrt(np.mean(difference ** 2))),
        "test_mae": float(np.mean(np.abs(difference))),
        **{f"test_mae_day_{h + 1}": float(v) for h, v in enumerate(by_day)},
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


MEASURES = ["val_loss_epoch_5", "best_epoch", "epochs_run", "best_val_loss",
            "seconds_per_epoch", "seconds_to_target"]


def summary(runs):
    """Means over seeds, and standard deviations (NaN with one seed); the
    time to target is averaged over the seeds that reached it."""
    test = [c for c in runs.columns if c.startswith("test_")]
    grouped = runs.groupby("model", sort=False)
    table = grouped[test + MEASURES].mean()
    for column in test + ["best_val_loss"]:
        table[f"{column}_sd"] = grouped[column].std()
    table["seeds"] = grouped.size()
    table["seeds_reaching_target"] = grouped["seconds_to_target"].count()
    return table.reset_index()


def with_sd(table, column, digits, seeds=1):
    """Formatted means, with their spread over several seeds."""
    means = table[column].map(lambda v: "" if pd.isna(v) else f"{v:.{digits}f}")
    if seeds == 1:
        return means
    return [m if pd.isna(s) else f"{m} ± {s:.{digits}f}"
            for m, s in zip(means, table[f"{column}_sd"])]


def shown(table, seeds):
    reached = [
        "" if pd.isna(n) else f"{'' if pd.isna(t) else f'{t:.1f}'} ({int(n)}/{int(k)})"
        for t, n, k in zip(table.seconds_to_target, table.seeds_reaching_target, table.seeds)
    ]
    return pd.DataFrame({
        "model": table.model,
        "test_rmse": with_sd(table, "test_rmse", 2, seeds),
        "test_mae": with_sd(table, "test_mae", 2, seeds),
        "val_loss_epoch_5": with_sd(table, "val_loss_epoch_5", 3),
        "best_epoch": with_sd(table, "best_epoch", 1),
        "epochs_run": with_sd(table, "epochs_run", 1),
        "best_val_loss": with_sd(table, "best_val_loss", 3, seeds),
        "s_per_epoch": with_sd(table, "seconds_per_epoch", 2),
        "s_to_lstm_best": reached,
    })


def by_day_ahead(table, seeds):
    days = [c for c in table.columns if c.startswith("test_mae_day_") and not c.endswith("_sd")]
    return pd.DataFrame({"model": table.model, **{
        f"day {c.rsplit('_', 1)[1]}": with_sd(table, c, 1, seeds) for c in days}})


def plot_validation_loss(runs, args, path):
    fig, ax = plt.subplots(figsize=(8, 5))
    for seed, models in runs.items():
        for kind, run in models.items():
            epochs = np.arange(1, len(run["val_loss"]) + 1)
            ax.plot(epochs, run["val_loss"], color=COLORS[kind], lw=2,
                    label=LABELS[kind] if seed == args.seed else None)
            best = run["val_loss"].argmin()
            ax.plot(epochs[best], run["val_loss"][best], "o", color=COLORS[kind])
    ax.set(yscale="log", xlabel="epoch", ylabel="validation MSE (scaled units, log)",
           title=f"Validation loss per epoch ({args.seeds} seed{'s' if args.seeds > 1 else ''})")
    ax.legend(frameon=False)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def plot_forecasts(data, models, actual, shown_series, path):
    """The first seed's forecasts one day ahead against actual sales, one
    panel per series shown."""
    fig, axes = plt.subplots(len(shown_series), 1, figsize=(11, 2 + 2.5 * len(shown_series)),
                             squeeze=False, layout="constrained")
    dates = as_matrix(data.test.dates)[:, 0]
    for ax, series in zip(axes[:, 0], shown_series):
        rows = np.ones(len(dates), bool) if series is None else data.test.key == series
        ax.plot(dates[rows], as_matrix(actual)[rows, 0], color="0.2", lw=2, label="actual")
        for kind, run in models.items():
            ax.plot(dates[rows], as_matrix(run["forecast"])[rows, 0], color=COLORS[kind],
                    lw=1.2, label=LABELS[kind])
        ax.set(ylabel="units sold", title=None if series is None else f"product {series}")
    fig.suptitle("Test period: forecast one day ahead vs actual sales")
    axes[0, 0].legend(frameon=False, loc="upper left")
    fig.savefig(path, dpi=110)


def main():
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    sales, data, about, shown_series = (
        retail_data if args.data == "retail" else synthetic_data)(args.lookback)
    print(about)
    print(f"Windows of {args.lookback} days: {len(data.train)} training, "
          f"{len(data.validation)} validation, {len(data.test)} test")

    seeds = range(args.seed, args.seed + args.seeds)
    runs = {seed: {kind: train(kind, data, seed, args) for kind in LABELS} for seed in seeds}
    actual = data.inverse_transform(data.test.y, key=data.test.key)
    per_seed = pd.DataFrame([
        run_row(kind, seed, run, runs[seed]["lstm"]["val_loss"].min(), actual)
        for seed in seeds for kind, run in runs[seed].items()
    ])
    per_seed.to_csv(output / "runs.csv", index=False)
    naive = pd.DataFrame([{"model": NAIVE, **errors(seasonal_naive(sales, data), actual)}])
    # Counts stay whole numbers beside the naive row's blanks.
    table = pd.concat([summary(per_seed), naive], ignore_index=True).astype(
        {"seeds": "Int64", "seeds_reaching_target": "Int64"})
    table.to_csv(output / "results.csv", index=False)
    spread = f" ± sd over {args.seeds} seeds" if args.seeds > 1 else ""
    print(f"\nTest period ({len(actual)} windows), errors in units sold; mean{spread}:")
    print(shown(table, args.seeds).to_string(index=False))
    print(f"\nMean absolute error by day ahead, units sold; mean{spread}:")
    print(by_day_ahead(table, args.seeds).to_string(index=False))

    plot_validation_loss(runs, args, output / "validation_loss.png")
    plot_forecasts(data, runs[args.seed], actual, shown_series, output / "test_forecast.png")
    print(f"\nWrote {output / 'results.csv'}, {output / 'runs.csv'}, "
          f"{output / 'validation_loss.png'} and {output / 'test_forecast.png'}")


if __name__ == "__main__":
    main()
