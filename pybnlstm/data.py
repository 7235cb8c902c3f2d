"""Turning dated series into windows for a recurrent forecaster.

`prepare_forecast_data()` checks a pandas DataFrame of one series, or of
many series told apart by a key column (products, stores), splits it by
date into training, validation and test periods, scales it with statistics
of the training period only, and cuts each series into sliding windows of
shape (samples, lookback, features), each labelled with the target one or
several horizons after its last step. A window belongs to the period of the
last date it forecasts, so no training window ever sees a validation or
test value, and no window crosses two series.
"""

import dataclasses
import numbers
import warnings

import numpy as np
import pandas as pd

from pybnlstm import _checks, _series


@dataclasses.dataclass
class Scaler:
    """Standardizes columns with means and deviations fitted on one frame,
    or on each series of a frame.

    A column that is constant where it was fitted keeps a scale of 1, so it
    is shifted, not divided by zero.

    Args:
        columns: The column names, in order.
        mean: One mean per column, or with `keys` one row of them per
            series, shape (series, columns).
        scale: One standard deviation per column, shaped as `mean`.
        keys: The series, in the order of the rows of `mean` and `scale`;
            `None` for one scaling shared by all rows.
    """

    columns: list
    mean: np.ndarray
    scale: np.ndarray
    keys: list = None

    @classmethod
    def fit(cls, frame, columns):
        values = frame[list(columns)].to_numpy(dtype="float64")
        scale = values.std(axis=0)
        return cls(list(columns), values.mean(axis=0), np.where(scale > 0, scale, 1.0))

    @classmethod
    def stack(cls, scalers):
        """One Scaler of the per-series scalers in the dict `scalers`."""
        first = next(iter(scalers.values()))
        return cls(first.columns,
                   np.stack([s.mean for s in scalers.values()]),
                   np.stack([s.scale for s in scalers.values()]),
                   list(scalers))

    def transform(self, frame):
        """Returns the scaled columns of `frame` as a float64 array."""
        values = frame[self.columns].to_numpy(dtype="float64")
        return (values - self.mean) / self.scale

    def inverse_transform(self, values, column, key=None):
        """Maps scaled `values` of `column` back to its units.

        `values` may have any shape. With per-series scaling, `key` names
        the series of each entry along the first axis (a window's series,
        as `Windows.key` holds them).
        """
        index = self._index(column)
        values = np.asarray(values, dtype="float64")
        if self.keys is None:
            return values * self.scale[index] + self.mean[index]
        rows = self._rows(key, len(values) if values.ndim else None)
        shape = (len(rows),) + (1,) * (values.ndim - 1)
        return (values * self.scale[rows, index].reshape(shape)
                + self.mean[rows, index].reshape(shape))

    def _index(self, column):
        if column not in self.columns:
            raise ValueError(
                f"Received an invalid value for argument `column`: expected "
                f"one of the scaled columns {self.columns}, got {column!r}"
            )
        return self.columns.index(column)

    def _rows(self, key, count):
        if key is None:
            raise ValueError(
                "Received no value for argument `key`: each series was "
                "scaled on its own, so the series of each value is needed "
                "(for example key=data.test.key)"
            )
        key = np.asarray(key, dtype=object).reshape(-1)
        if count is None or len(key) != count:
            raise ValueError(
                f"Received an invalid value for argument `key`: expected one "
                f"series per row of `values` ({count}), got {len(key)}"
            )
        position = {k: i for i, k in enumerate(self.keys)}
        unknown = [k for k in key if k not in position]
        if unknown:
            raise ValueError(
                f"Received an invalid value for argument `key`: series "
                f"{unknown[:3]} were not scaled here"
            )
        return np.array([position[k] for k in key])

    def get_config(self):
        return {
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "keys": None if self.keys is None else list(self.keys),
        }

    @classmethod
    def from_config(cls, config):
        return cls(
            list(config["columns"]),
            np.asarray(config["mean"], dtype="float64"),
            np.asarray(config["scale"], dtype="float64"),
            config.get("keys"),
        )


@dataclasses.dataclass
class Windows:
    """The windows of one period.

    Attributes:
        x: Inputs, float32, shape (samples, lookback, inputs).
        y: Scaled targets, float32, shape (samples,), or (samples,
            horizons) when `horizon` is a list.
        dates: The date each target forecasts, datetime64[ns], shaped as
            `y`.
        key: The series of each window, shape (samples,); `None` for one
            series.
    """

    x: np.ndarray
    y: np.ndarray
    dates: np.ndarray
    key: np.ndarray = None

    def __len__(self):
        return len(self.y)


@dataclasses.dataclass
class ForecastData:
    """What `prepare_forecast_data()` returns.

    Attributes:
        train, validation, test: The `Windows` of each period.
        scaler: The `Scaler` fitted on the training period (on each
            series' own with per-series scaling); `inverse_transform()`
            gives the target's units back.
        inputs: The names of the inputs, along the last axis of `x`.
        target, features, known_ahead, lookback, horizon, key: As passed.
    """

    train: Windows
    validation: Windows
    test: Windows
    scaler: Scaler
    target: str
    features: list
    known_ahead: list
    lookback: int
    horizon: object
    inputs: list = None
    key: str = None

    def inverse_transform(self, values, key=None):
        """Maps scaled target values (for example predictions) to its
        units; with per-series scaling, `key` gives each row's series."""
        return self.scaler.inverse_transform(values, self.target, key)


@dataclasses.dataclass
class _Spec:
    """The checked arguments that every series is prepared with."""

    target: str
    features: list
    known_ahead: list
    lookback: int
    horizons: np.ndarray
    date: str
    gaps: dict
    freq: str
    train_end: pd.Timestamp
    validation_end: pd.Timestamp
    several: bool = False
    key: str = None

    @property
    def columns(self):
        return list(dict.fromkeys([self.target, *self.features]))

    def inputs(self):
        """Each input of a window as (name, feature, steps later): the
        features in order, a known-ahead one once per horizon."""
        for feature in self.features:
            if feature not in self.known_ahead:
                yield feature, feature, 0
            elif not self.several:
                yield feature, feature, int(self.horizons[0])
            else:
                for h in self.horizons:
                    yield f"{feature}+{h}", feature, int(h)

    def series(self, name):
        """How messages name a series."""
        return f"Series {self.key}={name!r}"


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
    key=None,
    scaling="series",
):
    """Checks, splits, scales and windows dated series for forecasting.

    The periods are: training up to and including `train_end`, validation
    after it up to and including `validation_end`, test after that, the
    same dates for every series. Each window is assigned to the period of
    the last date it forecasts; its inputs may reach back into earlier
    periods, as a forecast made on that day would. Scaling uses the
    training period's rows only.

    Args:
        frame: A pandas DataFrame, one row per time step (per series with
            `key`), in date order within each series.
        target: Name of the column to forecast.
        lookback: Time steps per window (a positive integer).
        train_end: Last date of the training period (anything
            `pandas.Timestamp` reads, for example "2016-12-31").
        validation_end: Last date of the validation period, after
            `train_end`; the test period is what follows.
        features: Input columns, in order. Default: `[target]`. All must be
            numeric (booleans count as 0 and 1).
        horizon: How many steps after a window's last step its target lies
            (default 1, the next day), or a list of them, such as
            `range(1, 8)` for the next 7 days: `y` then has one column per
            horizon (a direct multi-output forecast).
        known_ahead: Features known in advance, such as planned promotions
            or prices: each window takes them `horizon` steps later, so its
            last step carries their value on the forecast date. With a list
            of horizons each of them becomes one input per horizon, named
            "column+h", holding its value h steps later (`inputs` lists the
            names): the last step then carries the known values of every
            forecast date.
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
        key: Name of the column that tells series apart (a product, a
            store), or `None` for one series. Each series is gap-filled and
            windowed on its own, from its own first to its last date, so
            series may differ in length and start; no window crosses two.
            A series with no windows in a period is named in a warning.
        scaling: With `key`: "series" (the default) scales each series
            with its own training period's statistics, "global" all series
            with those of every series' training rows together.

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
    spec = _checked_spec(target, lookback, train_end, validation_end, features,
                         horizon, known_ahead, date, gaps, freq)
    if key is None:
        series = {None: _series.checked_series(frame, date, spec.columns, spec.gaps, freq)}
    else:
        spec.key = _series.column_name("key", key)
        series = _split_series(frame, spec)
    scaler = _fitted_scaler(series, spec, key, scaling)
    periods = {"training": [], "validation": [], "test": []}
    for name, values in series.items():
        windows = _series_windows(values, spec, scaler, name)
        for period, chosen in _period_masks(windows[3], spec, name).items():
            periods[period].append([part[chosen] for part in windows])
    return ForecastData(
        train=_joined(periods["training"], key),
        validation=_joined(periods["validation"], key),
        test=_joined(periods["test"], key),
        scaler=scaler,
        target=spec.target,
        features=spec.features,
        known_ahead=spec.known_ahead,
        lookback=spec.lookback,
        horizon=spec.horizons.tolist() if spec.several else int(spec.horizons[0]),
        inputs=[name for name, _, _ in spec.inputs()],
        key=key,
    )


def _checked_spec(target, lookback, train_end, validation_end, features,
                  horizon, known_ahead, date, gaps, freq):
    target = _series.column_name("target", target)
    features = [target] if features is None else _series.column_list("features", features)
    if not features:
        raise ValueError(
            "Received an invalid value for argument `features`: expected at "
            "least one column name, got an empty list"
        )
    known_ahead = _series.column_list("known_ahead", known_ahead)
    unknown = [c for c in known_ahead if c not in features]
    if unknown:
        raise ValueError(
            "Received an invalid value for argument `known_ahead`: expected "
            f"columns among `features` {features}, got {unknown}"
        )
    train_end = _series.timestamp("train_end", train_end)
    validation_end = _series.timestamp("validation_end", validation_end)
    if not train_end < validation_end:
        raise ValueError(
            "Received invalid values for arguments `train_end` and "
            "`validation_end`: expected train_end before validation_end, got "
            f"{train_end.date()} and {validation_end.date()}"
        )
    spec = _Spec(target, features, known_ahead,
                 _checks.positive_int("lookback", lookback), _horizons(horizon),
                 _series.column_name("date", date), None, freq, train_end, validation_end,
                 several=not isinstance(horizon, numbers.Integral))
    spec.gaps = _series.gap_methods(gaps, spec.columns)
    return spec


def _horizons(horizon):
    """The horizons as a sorted array of distinct positive integers."""
    if isinstance(horizon, numbers.Integral) and not isinstance(horizon, bool):
        return np.array([_checks.positive_int("horizon", horizon)])
    try:
        values = [_checks.positive_int("horizon", h) for h in horizon]
    except TypeError as error:
        raise TypeError(
            "Received an invalid value for argument `horizon`: expected a "
            f"positive integer or a list of them, got {horizon!r}"
        ) from error
    if not values or len(set(values)) != len(values) or values != sorted(values):
        raise ValueError(
            "Received an invalid value for argument `horizon`: expected "
            f"increasing positive integers, got {list(horizon)!r}"
        )
    return np.array(values)


def _split_series(frame, spec):
    """Each series' checked, gap-filled frame, by key (sorted)."""
    key = spec.key
    if key not in frame.columns:
        raise ValueError(
            f"The data has no column {key!r} for `key`; its columns are "
            f"{list(frame.columns)}"
        )
    if key in spec.columns or key == spec.date:
        raise ValueError(
            f"Received an invalid value for argument `key`: {key!r} is the "
            "date, the target or a feature; expected the column that tells "
            "series apart"
        )
    if frame[key].isna().any():
        row = int(np.flatnonzero(frame[key].isna().to_numpy())[0])
        raise ValueError(f"Column {key!r} (the key) is missing at row {row}")
    series = {}
    for name, rows in frame.groupby(key, sort=True):
        try:
            series[name] = _series.checked_series(rows, spec.date, spec.columns,
                                           spec.gaps, spec.freq)
        except ValueError as error:
            raise ValueError(f"{spec.series(name)}: {error}") from error
    return series


def _fitted_scaler(series, spec, key, scaling):
    if scaling not in ("series", "global"):
        raise ValueError(
            "Received an invalid value for argument `scaling`: expected "
            f"'series' or 'global', got {scaling!r}"
        )
    training = {name: values[values[spec.date] <= spec.train_end]
                for name, values in series.items()}
    if key is None or scaling == "global":
        rows = pd.concat(training.values())
        if rows.empty:
            first = min(v[spec.date].iloc[0] for v in series.values())
            raise ValueError(
                f"The training period (up to train_end="
                f"{spec.train_end.date()}) holds no rows: the data starts on "
                f"{first.date()}"
            )
        return Scaler.fit(rows, spec.columns)
    empty = [name for name, rows in training.items() if rows.empty]
    if empty:
        raise ValueError(
            f"Series {empty} have no rows in the training period (up to "
            f"{spec.train_end.date()}), so they cannot be scaled on their "
            "own: drop them, or pass scaling='global'"
        )
    return Scaler.stack({name: Scaler.fit(rows, spec.columns)
                         for name, rows in training.items()})


def _series_windows(values, spec, scaler, name):
    """One series' (x, y, key, dates) of every window."""
    columns = spec.columns
    scaled = (values[columns].to_numpy(dtype="float64") - _row(scaler.mean, scaler, name)) \
        / _row(scaler.scale, scaler, name)
    inputs = [np.roll(scaled[:, columns.index(feature)], -later)
              for _, feature, later in spec.inputs()]
    needed = spec.lookback + spec.horizons[-1]
    if len(values) < needed:
        where = "" if name is None else f"{spec.series(name)}: "
        raise ValueError(
            f"{where}Received an invalid value for argument `lookback`: a "
            f"window of {spec.lookback} steps plus a horizon of "
            f"{spec.horizons[-1]} needs at least {needed} rows, but the data "
            f"has {len(values)}"
        )
    x, y, target_rows = make_windows(np.stack(inputs, axis=1),
                                     scaled[:, columns.index(spec.target)],
                                     spec.lookback, spec.horizons)
    dates = values[spec.date].to_numpy()[target_rows]
    if not spec.several:
        y, dates = y[:, 0], dates[:, 0]
    return x, y, np.full(len(x), name, dtype=object), dates


def _row(values, scaler, name):
    return values if scaler.keys is None else values[scaler.keys.index(name)]


def _period_masks(dates, spec, name):
    """Which windows fall in each period, by the last date they forecast."""
    last = dates if dates.ndim == 1 else dates[:, -1]
    train_end = spec.train_end.to_datetime64()
    validation_end = spec.validation_end.to_datetime64()
    masks = {
        "training": last <= train_end,
        "validation": (last > train_end) & (last <= validation_end),
        "test": last > validation_end,
    }
    for period, chosen in masks.items():
        if chosen.any():
            continue
        message = (
            f"The {period} period has no windows: with lookback="
            f"{spec.lookback} and horizon up to {spec.horizons[-1]}, "
            f"forecasts run from {pd.Timestamp(last[0]).date()} to "
            f"{pd.Timestamp(last[-1]).date()}; check `train_end` "
            f"({spec.train_end.date()}) and `validation_end` "
            f"({spec.validation_end.date()})"
        )
        if name is None:
            raise ValueError(message)
        warnings.warn(f"{spec.series(name)}: {message}", stacklevel=4)
    return masks


def _joined(parts, key):
    """One period's Windows from each series' (x, y, key, dates)."""
    x, y, keys, dates = (np.concatenate([p[i] for p in parts]) for i in range(4))
    if len(x) == 0:
        raise ValueError("A period has no windows in any series; check "
                         "`train_end` and `validation_end`")
    return Windows(x, y, dates, None if key is None else keys)


def make_windows(inputs, targets, lookback, horizon=1):
    """Cuts aligned arrays into sliding windows.

    Args:
        inputs: Array (steps, features).
        targets: Array (steps,).
        lookback: Steps per window.
        horizon: Steps from a window's last input to its target, or an
            array of them.

    Returns:
        `(x, y, target_rows)`: x (windows, lookback, features) and y as
        float32, and the row of each target; y and target_rows have shape
        (windows,) for one horizon, (windows, horizons) for an array.
    """
    inputs = np.asarray(inputs)
    targets = np.asarray(targets)
    lookback = _checks.positive_int("lookback", lookback)
    horizons = _horizons(horizon)
    if inputs.ndim != 2 or targets.shape != inputs.shape[:1]:
        raise ValueError(
            "Expected `inputs` of shape (steps, features) and `targets` of "
            f"shape (steps,), got {inputs.shape} and {targets.shape}"
        )
    count = len(inputs) - lookback - horizons[-1] + 1
    if count < 1:
        raise ValueError(
            f"Received an invalid value for argument `lookback`: "
            f"{lookback} steps plus a horizon of {horizons[-1]} need at least "
            f"{lookback + horizons[-1]} rows, got {len(inputs)}"
        )
    view = np.lib.stride_tricks.sliding_window_view(inputs, lookback, axis=0)
    x = np.ascontiguousarray(view[:count].transpose(0, 2, 1), dtype="float32")
    target_rows = (np.arange(count) + lookback - 1)[:, None] + horizons
    if np.ndim(horizon) == 0:
        target_rows = target_rows[:, 0]
    return x, targets[target_rows].astype("float32"), target_rows
