"""Turning a dated series into windows for a recurrent forecaster.

`prepare_forecast_data()` checks a pandas DataFrame, splits it by date into
training, validation and test periods, scales it with statistics of the
training period only, and cuts it into sliding windows of shape
(samples, lookback, features), each labelled with the target `horizon` steps
after its last step. A window belongs to the period of the date it
forecasts, so no training window ever sees a validation or test value.
"""

import dataclasses
import numbers

import numpy as np
import pandas as pd

from pybnlstm import _checks


@dataclasses.dataclass
class Scaler:
    """Standardizes columns with means and deviations fitted on one frame.

    A column that is constant where it was fitted keeps a scale of 1, so it
    is shifted, not divided by zero.

    Args:
        columns: The column names, in order.
        mean: One mean per column.
        scale: One standard deviation per column.
    """

    columns: list
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, frame, columns):
        values = frame[list(columns)].to_numpy(dtype="float64")
        scale = values.std(axis=0)
        return cls(list(columns), values.mean(axis=0), np.where(scale > 0, scale, 1.0))

    def transform(self, frame):
        """Returns the scaled columns of `frame` as a float64 array."""
        values = frame[self.columns].to_numpy(dtype="float64")
        return (values - self.mean) / self.scale

    def inverse_transform(self, values, column):
        """Maps scaled `values` of `column` (any shape) back to its units."""
        index = self._index(column)
        values = np.asarray(values, dtype="float64")
        return values * self.scale[index] + self.mean[index]

    def _index(self, column):
        if column not in self.columns:
            raise ValueError(
                f"Received an invalid value for argument `column`: expected "
                f"one of the scaled columns {self.columns}, got {column!r}"
            )
        return self.columns.index(column)

    def get_config(self):
        return {
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            list(config["columns"]),
            np.asarray(config["mean"], dtype="float64"),
            np.asarray(config["scale"], dtype="float64"),
        )


@dataclasses.dataclass
class Windows:
    """The windows of one period.

    Attributes:
        x: Inputs, float32, shape (samples, lookback, features).
        y: Scaled targets, float32, shape (samples,).
        dates: The date each window forecasts, datetime64[ns], (samples,).
    """

    x: np.ndarray
    y: np.ndarray
    dates: np.ndarray

    def __len__(self):
        return len(self.y)


@dataclasses.dataclass
class ForecastData:
    """What `prepare_forecast_data()` returns.

    Attributes:
        train, validation, test: The `Windows` of each period.
        scaler: The `Scaler` fitted on the training period; its
            `inverse_transform(predictions, target)` gives sales units back.
        target, features, known_ahead, lookback, horizon: As passed.
    """

    train: Windows
    validation: Windows
    test: Windows
    scaler: Scaler
    target: str
    features: list
    known_ahead: list
    lookback: int
    horizon: int

    def inverse_transform(self, values):
        """Maps scaled target values (for example predictions) to its units."""
        return self.scaler.inverse_transform(values, self.target)


def prepare_forecast_data(
    frame,
    target,
    *,
    lookback,
    train_end,
    validation_end,
    features=None,
    horizon=1,
    known_ahead=(),
    date="date",
    gaps="error",
    freq="D",
):
    """Checks, splits, scales and windows a dated series for forecasting.

    The periods are: training up to and including `train_end`, validation
    after it up to and including `validation_end`, test after that. Each
    window is assigned to the period of the date it forecasts; its inputs
    may reach back into earlier periods, as a forecast made on that day
    would. Scaling uses the training period's rows only.

    Args:
        frame: A pandas DataFrame, one row per time step, in date order.
        target: Name of the column to forecast.
        lookback: Time steps per window (a positive integer).
        train_end: Last date of the training period (anything
            `pandas.Timestamp` reads, for example "2016-12-31").
        validation_end: Last date of the validation period, after
            `train_end`; the test period is what follows.
        features: Input columns, in order. Default: `[target]`. All must be
            numeric (booleans count as 0 and 1).
        horizon: How many steps after a window's last step its target lies.
            Default: 1 (the next day).
        known_ahead: Features known in advance, such as planned promotions
            or holidays: in each window they are taken `horizon` steps later,
            so the last step carries their value on the forecast date.
        date: Name of the date column. Default: "date".
        gaps: What to do with missing time steps (dates absent from the
            `freq` grid): one method for every column, or a dict of
            methods by column, for example `{"units": "zero", "price":
            "previous"}` (a missing day of sales is usually a day with none,
            while a price carries forward). The methods: "error" (the
            default, and that of columns the dict leaves out) stops with
            the first gap; "zero" fills with 0; "previous" carries the last
            value forward; "interpolate" fills linearly in time.
        freq: The series' step, a pandas frequency. Default: "D" (daily).

    Returns:
        A `ForecastData`.

    Example:

    >>> import pandas as pd
    >>> frame = pd.DataFrame({
    ...     "date": pd.date_range("2020-01-01", periods=60),
    ...     "sales": range(60),
    ... })
    >>> data = prepare_forecast_data(
    ...     frame, "sales", lookback=7,
    ...     train_end="2020-02-05", validation_end="2020-02-17")
    >>> data.train.x.shape, len(data.validation), len(data.test)
    ((29, 7, 1), 12, 12)
    """
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(
            "Received an invalid value for argument `frame`: expected a "
            f"pandas DataFrame, got an object of type {type(frame).__name__}"
        )
    target = _column_name("target", target)
    date = _column_name("date", date)
    features = [target] if features is None else _column_list("features", features)
    if not features:
        raise ValueError(
            "Received an invalid value for argument `features`: expected at "
            "least one column name, got an empty list"
        )
    known_ahead = _column_list("known_ahead", known_ahead)
    unknown = [c for c in known_ahead if c not in features]
    if unknown:
        raise ValueError(
            "Received an invalid value for argument `known_ahead`: expected "
            f"columns among `features` {features}, got {unknown}"
        )
    lookback = _checks.positive_int("lookback", lookback)
    horizon = _checks.positive_int("horizon", horizon)
    columns = list(dict.fromkeys([target, *features]))
    gaps = _gap_methods(gaps, columns)
    frame = _checked_series(frame, date, columns, gaps, freq)
    dates = frame[date].to_numpy()
    train_end = _timestamp("train_end", train_end)
    validation_end = _timestamp("validation_end", validation_end)
    if not train_end < validation_end:
        raise ValueError(
            "Received invalid values for arguments `train_end` and "
            "`validation_end`: expected train_end before validation_end, got "
            f"{train_end.date()} and {validation_end.date()}"
        )

    steps = len(frame)
    if lookback + horizon > steps:
        raise ValueError(
            f"Received an invalid value for argument `lookback`: a window of "
            f"{lookback} steps plus a horizon of {horizon} needs at least "
            f"{lookback + horizon} rows, but the data has {steps}"
        )
    in_training = dates <= train_end.to_datetime64()
    if not in_training.any():
        raise ValueError(
            f"The training period (up to train_end={train_end.date()}) holds "
            f"no rows: the data starts on {pd.Timestamp(dates[0]).date()}"
        )
    scaler = Scaler.fit(frame[in_training], columns)
    scaled = scaler.transform(frame)
    target_values = scaled[:, columns.index(target)]
    inputs = scaled[:, [columns.index(f) for f in features]]
    for f in known_ahead:
        k = features.index(f)
        inputs[:, k] = np.roll(inputs[:, k], -horizon)

    x, y, target_rows = make_windows(inputs, target_values, lookback, horizon)
    target_dates = dates[target_rows]
    periods = {
        "training": target_dates <= train_end.to_datetime64(),
        "validation": (target_dates > train_end.to_datetime64())
        & (target_dates <= validation_end.to_datetime64()),
        "test": target_dates > validation_end.to_datetime64(),
    }
    windows = {}
    for name, chosen in periods.items():
        if not chosen.any():
            raise ValueError(
                f"The {name} period has no windows: with lookback={lookback} "
                f"and horizon={horizon}, forecasts run from "
                f"{pd.Timestamp(target_dates[0]).date()} to "
                f"{pd.Timestamp(target_dates[-1]).date()}; check `train_end` "
                f"({train_end.date()}) and `validation_end` "
                f"({validation_end.date()})"
            )
        windows[name] = Windows(x[chosen], y[chosen], target_dates[chosen])
    return ForecastData(
        train=windows["training"],
        validation=windows["validation"],
        test=windows["test"],
        scaler=scaler,
        target=target,
        features=features,
        known_ahead=known_ahead,
        lookback=lookback,
        horizon=horizon,
    )


def make_windows(inputs, targets, lookback, horizon=1):
    """Cuts aligned arrays into sliding windows.

    Args:
        inputs: Array (steps, features).
        targets: Array (steps,).
        lookback: Steps per window.
        horizon: Steps from a window's last input to its target.

    Returns:
        `(x, y, target_rows)`: x (windows, lookback, features) and y
        (windows,) as float32, and the row of each target.
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    lookback = _checks.positive_int("lookback", lookback)
    horizon = _checks.positive_int("horizon", horizon)
    if inputs.ndim != 2 or targets.shape != inputs.shape[:1]:
        raise ValueError(
            "Expected `inputs` of shape (steps, features) and `targets` of "
            f"shape (steps,), got {inputs.shape} and {targets.shape}"
        )
    count = len(inputs) - lookback - horizon + 1
    if count < 1:
        raise ValueError(
            f"Received an invalid value for argument `lookback`: "
            f"{lookback} steps plus a horizon of {horizon} need at least "
            f"{lookback + horizon} rows, got {len(inputs)}"
        )
    view = np.lib.stride_tricks.sliding_window_view(inputs, lookback, axis=0)
    x = np.ascontiguousarray(view[:count].transpose(0, 2, 1), dtype="float32")
    target_rows = np.arange(count) + lookback - 1 + horizon
    return x, targets[target_rows].astype("float32"), target_rows


def _column_name(name, value):
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"Received an invalid value for argument `{name}`: expected a "
            f"column name (a non-empty string), got {value!r}"
        )
    return value


def _column_list(name, value):
    if isinstance(value, str):
        value = [value]
    value = list(value)
    for v in value:
        _column_name(name, v)
    if len(set(value)) != len(value):
        raise ValueError(
            f"Received an invalid value for argument `{name}`: the column "
            f"names repeat: {value}"
        )
    return value


def _timestamp(name, value):
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Received an invalid value for argument `{name}`: expected a "
            f"date such as '2016-12-31', got {value!r}"
        ) from error
    if pd.isna(stamp) or isinstance(value, numbers.Number):
        raise ValueError(
            f"Received an invalid value for argument `{name}`: expected a "
            f"date such as '2016-12-31', got {value!r}"
        )
    return stamp


GAP_METHODS = ("error", "zero", "previous", "interpolate")


def _gap_methods(gaps, columns):
    """The gap method of each column, from one method or a dict by column."""
    if isinstance(gaps, str) and gaps in GAP_METHODS:
        return dict.fromkeys(columns, gaps)
    if isinstance(gaps, dict):
        unknown = [c for c in gaps if c not in columns]
        if unknown:
            raise ValueError(
                "Received an invalid value for argument `gaps`: its keys "
                f"must be among the target and features {columns}, got "
                f"{unknown}"
            )
        gaps = {c: gaps.get(c, "error") for c in columns}
    else:
        raise TypeError(
            "Received an invalid value for argument `gaps`: expected one of "
            f"{GAP_METHODS} or a dict of them by column, got {gaps!r}"
        )
    for column, method in gaps.items():
        if method not in GAP_METHODS:
            raise ValueError(
                f"Received an invalid value for argument `gaps`: expected "
                f"one of {GAP_METHODS} for column {column!r}, got {method!r}"
            )
    return gaps


def _fill_gaps(frame, date, grid, gaps):
    """The frame on the full grid, each column's missing steps filled."""
    missing_steps = grid[~grid.isin(frame[date])]
    unfilled = [c for c, method in gaps.items() if method == "error"]
    if unfilled:
        raise ValueError(
            f"The series has {len(missing_steps)} missing time step(s), "
            f"the first on {missing_steps[0].date()}; fill them, or pass "
            "gaps='interpolate' to fill them linearly, or a method per "
            "column, such as gaps={'units': 'zero', 'price': 'previous'} "
            f"(no method for {unfilled})"
        )
    out = frame.set_index(date).reindex(grid)
    for column, method in gaps.items():
        if method == "zero":
            out[column] = out[column].fillna(0.0)
        elif method == "previous":
            out[column] = out[column].ffill()
        else:
            out[column] = out[column].interpolate(method="time")
    return out.rename_axis(date).reset_index()


def _checked_series(frame, date, columns, gaps, freq):
    """The needed columns, numeric, with a sorted, gap-free date column."""
    missing = [c for c in [date, *columns] if c not in frame.columns]
    if missing:
        raise ValueError(
            f"The data has no column(s) {missing}; its columns are "
            f"{list(frame.columns)}"
        )
    not_numeric = [
        c
        for c in columns
        if not (
            pd.api.types.is_numeric_dtype(frame[c])
            or pd.api.types.is_bool_dtype(frame[c])
        )
    ]
    if not_numeric:
        raise TypeError(
            f"Column(s) {not_numeric} are not numeric (types "
            f"{[str(frame[c].dtype) for c in not_numeric]}); convert or "
            "encode them first"
        )
    try:
        dates = pd.to_datetime(frame[date])
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"Column {date!r} does not hold dates: {error}"
        ) from error
    if dates.isna().any():
        row = int(np.flatnonzero(dates.isna().to_numpy())[0])
        raise ValueError(f"Column {date!r} has a missing date at row {row}")
    out = frame[columns].astype("float64")
    out.insert(0, date, dates.to_numpy())
    out = out.reset_index(drop=True)

    values = out[columns].to_numpy()
    if not np.isfinite(values).all():
        bad = ~np.isfinite(values)
        row, col = np.argwhere(bad)[0]
        raise ValueError(
            f"Column(s) {[c for c, b in zip(columns, bad.any(axis=0)) if b]} "
            f"hold NaN or infinite values, the first in {columns[col]!r} on "
            f"{out[date].iloc[row].date()}; fill or drop them first"
        )

    stamps = out[date]
    step = pd.tseries.frequencies.to_offset(freq)
    later = stamps.diff().iloc[1:] <= pd.Timedelta(0)
    if later.any():
        row = int(np.flatnonzero(later.to_numpy())[0]) + 1
        raise ValueError(
            f"Column {date!r} is not in increasing order: row {row} "
            f"({stamps.iloc[row].date()}) does not come after row {row - 1} "
            f"({stamps.iloc[row - 1].date()}); sort the data and remove "
            "duplicate dates first"
        )
    grid = pd.date_range(stamps.iloc[0], stamps.iloc[-1], freq=step)
    off_grid = ~stamps.isin(grid)
    if off_grid.any():
        row = int(np.flatnonzero(off_grid.to_numpy())[0])
        raise ValueError(
            f"Date {stamps.iloc[row]} at row {row} is not on the {freq!r} "
            f"grid that starts on {stamps.iloc[0]}; check `freq`"
        )
    if len(grid) != len(stamps):
        out = _fill_gaps(out, date, grid, gaps)
    return out
