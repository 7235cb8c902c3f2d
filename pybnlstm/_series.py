"""Checking a dated series before it is windowed: column names, dates, and
the filling of missing time steps, column by column."""

import numbers

import numpy as np
import pandas as pd


def column_name(name, value):
    if not isinstance(value, str) or not value:
        raise TypeError(
            f"Received an invalid value for argument `{name}`: expected a "
            f"column name (a non-empty string), got {value!r}"
        )
    return value


def column_list(name, value):
    if isinstance(value, str):
        value = [value]
    value = list(value)
    for v in value:
        column_name(name, v)
    if len(set(value)) != len(value):
        raise ValueError(
            f"Received an invalid value for argument `{name}`: the column "
            f"names repeat: {value}"
        )
    return value


def timestamp(name, value):
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


def gap_methods(gaps, columns):
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


def checked_series(frame, date, columns, gaps, freq):
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
