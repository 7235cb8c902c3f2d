"""Windows, date splits and scaling (pybnlstm.data), checked with explicit loops."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pybnlstm import Scaler, make_windows, prepare_forecast_data

ROOT = Path(__file__).resolve().parents[1]
SALES = ROOT / "inst" / "extdata" / "daily_sales.csv"


def series(days=120, start="2020-01-01", seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "date": pd.date_range(start, periods=days, freq="D"),
            "sales": rng.normal(100, 20, days),
            "price": rng.uniform(4, 6, days),
            "promotion": rng.integers(0, 2, days),
        }
    )


def prepare(frame, **kwargs):
    args = dict(
        target="sales",
        features=["sales", "price", "promotion"],
        lookback=14,
        train_end="2020-03-15",
        validation_end="2020-04-05",
    )
    args.update(kwargs)
    return prepare_forecast_data(frame, **args)


def expected_windows(frame, features, target, lookback, horizon, train_end, known_ahead=()):
    """Windows built one by one from the frame, scaled by the training rows."""
    train = frame[frame.date <= pd.Timestamp(train_end)]
    mean = {c: train[c].mean() for c in frame.columns if c != "date"}
    std = {c: train[c].std(ddof=0) for c in frame.columns if c != "date"}
    xs, ys, dates = [], [], []
    for last in range(lookback - 1, len(frame) - horizon):
        window = []
        for row in range(last - lookback + 1, last + 1):
            step = []
            for c in features:
                source = row + horizon if c in known_ahead else row
                step.append((frame[c].iloc[source] - mean[c]) / std[c])
            window.append(step)
        xs.append(window)
        ys.append((frame[target].iloc[last + horizon] - mean[target]) / std[target])
        dates.append(frame.date.iloc[last + horizon])
    return np.array(xs), np.array(ys), np.array(dates, dtype="datetime64[ns]")


@pytest.mark.parametrize("horizon", [1, 3])
def test_windows_match_a_loop_over_the_rows(horizon):
    frame = series()
    data = prepare(frame, horizon=horizon, known_ahead=["promotion"])
    x, y, dates = expected_windows(
        frame, ["sales", "price", "promotion"], "sales", 14, horizon, "2020-03-15",
        known_ahead=["promotion"],
    )
    got_x = np.concatenate([data.train.x, data.validation.x, data.test.x])
    got_y = np.concatenate([data.train.y, data.validation.y, data.test.y])
    got_dates = np.concatenate([data.train.dates, data.validation.dates, data.test.dates])
    assert got_x.shape == (120 - 14 - horizon + 1, 14, 3)
    assert got_x.dtype == np.float32 and got_y.dtype == np.float32
    np.testing.assert_allclose(got_x, x, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_y, y, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(got_dates, dates)


def test_periods_follow_the_forecast_dates():
    data = prepare(series())
    train_end, validation_end = np.datetime64("2020-03-15"), np.datetime64("2020-04-05")
    assert data.train.dates.max() == train_end
    assert data.validation.dates.min() == train_end + np.timedelta64(1, "D")
    assert data.validation.dates.max() == validation_end
    assert data.test.dates.min() == validation_end + np.timedelta64(1, "D")
    # 120 days from 2020-01-01 end on 2020-04-29.
    assert len(data.validation) == 21 and len(data.test) == 24
    assert len(data.train) == 120 - 14 - 21 - 24


def test_no_training_window_sees_a_later_value():
    """Changing everything after train_end leaves the training windows and the scaler alone."""
    frame = series()
    changed = frame.copy()
    later = changed.date > pd.Timestamp("2020-03-15")
    changed.loc[later, ["sales", "price", "promotion"]] = 1e6
    for known_ahead in ([], ["promotion", "price"]):
        a = prepare(frame, known_ahead=known_ahead, horizon=2)
        b = prepare(changed, known_ahead=known_ahead, horizon=2)
        np.testing.assert_array_equal(a.train.x, b.train.x)
        np.testing.assert_array_equal(a.train.y, b.train.y)
        np.testing.assert_array_equal(a.scaler.mean, b.scaler.mean)
        np.testing.assert_array_equal(a.scaler.scale, b.scaler.scale)
        assert not np.array_equal(a.validation.y, b.validation.y)


def test_scaler_is_fitted_on_the_training_rows():
    frame = series()
    data = prepare(frame)
    train = frame[frame.date <= "2020-03-15"]
    assert data.scaler.columns == ["sales", "price", "promotion"]
    np.testing.assert_allclose(data.scaler.mean, train[["sales", "price", "promotion"]].mean())
    np.testing.assert_allclose(
        data.scaler.scale, train[["sales", "price", "promotion"]].std(ddof=0)
    )


def test_inverse_scaling_round_trips_to_sales_units():
    frame = series()
    data = prepare(frame)
    sales = frame.set_index("date").sales
    np.testing.assert_allclose(
        data.inverse_transform(data.test.y), sales.loc[data.test.dates].to_numpy(), rtol=1e-5
    )
    predictions = data.test.y.reshape(-1, 1)
    assert data.inverse_transform(predictions).shape == (len(data.test), 1)
    restored = Scaler.from_config(data.scaler.get_config())
    np.testing.assert_array_equal(
        restored.inverse_transform(data.test.y, "sales"), data.inverse_transform(data.test.y)
    )
    with pytest.raises(ValueError, match="`column`.*'units'"):
        data.scaler.inverse_transform(data.test.y, "units")


def test_constant_feature_is_shifted_not_divided_by_zero():
    frame = series().assign(promotion=0)
    data = prepare(frame)
    assert np.isfinite(data.train.x).all()
    np.testing.assert_array_equal(data.train.x[..., 2], 0)


def test_target_need_not_be_an_input():
    data = prepare(series(), features=["price", "promotion"])
    assert data.train.x.shape[-1] == 2
    assert data.scaler.columns == ["sales", "price", "promotion"]


def test_booleans_count_as_numbers():
    frame = series().assign(promotion=lambda f: f.promotion.astype(bool))
    data = prepare(frame)
    restored = data.scaler.inverse_transform(data.train.x[..., 2], "promotion")
    assert set(np.unique(np.round(restored, 4))) == {0.0, 1.0}


def test_gaps_can_be_interpolated():
    frame = series()
    with_gap = frame.drop(index=[40, 41]).reset_index(drop=True)
    with pytest.raises(ValueError, match="2 missing time step.*2020-02-10.*gaps='interpolate'"):
        prepare(with_gap)
    data = prepare(with_gap, gaps="interpolate")
    assert len(data.train) + len(data.validation) + len(data.test) == 120 - 14
    filled = data.scaler.inverse_transform(data.train.x[40 - 13, -1, 0], "sales")
    between = frame.sales.iloc[39] + (frame.sales.iloc[42] - frame.sales.iloc[39]) / 3
    np.testing.assert_allclose(filled, between, rtol=1e-5)


def test_gaps_filled_per_column():
    """Units missing on a closed day are zero sales; the price carries
    forward; a column the dict leaves out still stops at a gap."""
    frame = series()
    with_gap = frame.drop(index=[40, 41]).reset_index(drop=True)
    data = prepare(with_gap, gaps={"sales": "zero", "price": "previous",
                                   "promotion": "interpolate"})
    window = data.train.x[42 - 13]  # the window whose last step is row 42
    restore = data.scaler.inverse_transform
    np.testing.assert_allclose(restore(window[-3:-1, 0], "sales"), [0, 0], atol=1e-4)
    np.testing.assert_allclose(restore(window[-3:-1, 1], "price"),
                               [frame.price.iloc[39]] * 2, rtol=1e-5)
    np.testing.assert_allclose(restore(window[-1, 0], "sales"), frame.sales.iloc[42], rtol=1e-5)
    # Scaling saw the filled rows: the zeros are training data.
    filled = frame.assign(sales=np.where(frame.index.isin([40, 41]), 0.0, frame.sales),
                          price=frame.price.where(~frame.index.isin([40, 41])).ffill())
    train = filled[filled.date <= "2020-03-15"]
    np.testing.assert_allclose(data.scaler.mean[:2], [train.sales.mean(), train.price.mean()])
    with pytest.raises(ValueError, match=r"missing time step.*no method for \['promotion'\]"):
        prepare(with_gap, gaps={"sales": "zero", "price": "previous"})


def test_weekly_series_with_freq():
    frame = series(days=60).assign(date=pd.date_range("2010-01-03", periods=60, freq="W"))
    data = prepare(frame, train_end="2010-09-30", validation_end="2010-12-31", freq="W", lookback=8)
    assert data.train.x.shape[1:] == (8, 3)
    with pytest.raises(ValueError, match="missing time step"):
        prepare(frame, train_end="2010-09-30", validation_end="2010-12-31", lookback=8)


@pytest.mark.parametrize(
    "change, kwargs, error, message",
    [
        (None, {"target": "units"}, ValueError, r"no column\(s\) \['units'\].*'sales'"),
        (None, {"features": ["sales", "cost"]}, ValueError, r"no column\(s\) \['cost'\]"),
        (None, {"date": "day"}, ValueError, r"no column\(s\) \['day'\]"),
        (None, {"target": 3}, TypeError, "`target`.*column name"),
        (None, {"features": []}, ValueError, "`features`.*at least one"),
        (None, {"features": ["sales", "sales"]}, ValueError, "`features`.*repeat"),
        (None, {"known_ahead": ["holiday"]}, ValueError, "`known_ahead`.*among `features`"),
        (None, {"lookback": 0}, ValueError, "`lookback`.*positive integer"),
        (None, {"lookback": 7.5}, TypeError, "`lookback`.*positive integer"),
        (None, {"horizon": -1}, ValueError, "`horizon`.*positive integer"),
        (None, {"lookback": 120}, ValueError, "`lookback`.*needs at least 121 rows.*has 120"),
        (None, {"lookback": 80}, ValueError, "training period has no windows"),
        (None, {"gaps": "drop"}, TypeError, "`gaps`.*one of.*'zero'.*or a dict"),
        (None, {"gaps": {"cost": "zero"}}, ValueError, r"`gaps`.*keys.*\['cost'\]"),
        (None, {"gaps": {"price": "mean"}}, ValueError, "`gaps`.*column 'price', got 'mean'"),
        (None, {"train_end": "someday"}, ValueError, "`train_end`.*date"),
        (None, {"train_end": 5}, ValueError, "`train_end`.*date"),
        (None, {"validation_end": "2020-03-01"}, ValueError, "train_end before validation_end"),
        (None, {"validation_end": "2020-06-01"}, ValueError, "test period has no windows"),
        (None, {"train_end": "2019-12-01"}, ValueError, "training period.*no rows"),
        (lambda f: f.assign(price=f.price.astype(str)), {}, TypeError, r"\['price'\] are not numeric"),
        (lambda f: f.assign(date="not a date"), {}, ValueError, "'date' does not hold dates"),
        (lambda f: f.iloc[::-1], {}, ValueError, "not in increasing order: row 1"),
        (lambda f: pd.concat([f.iloc[:50], f.iloc[49:]]), {}, ValueError, "not in increasing order: row 50"),
        (lambda f: f.assign(date=f.date + pd.Timedelta(hours=1) * (f.index == 5)), {}, ValueError, "not on the 'D' grid"),
        (lambda f: f.assign(sales=f.sales.where(f.index != 30)), {}, ValueError, r"NaN.*'sales' on 2020-01-31"),
        (lambda f: f.assign(price=f.price.where(f.index != 3, np.inf)), {}, ValueError, "NaN or infinite.*'price'"),
        (lambda f: f.assign(date=f.date.where(f.index != 2)), {}, ValueError, "missing date at row 2"),
    ],
)
def test_bad_input_is_named(change, kwargs, error, message):
    frame = series()
    if change is not None:
        frame = change(frame)
    with pytest.raises(error, match=message):
        prepare(frame, **kwargs)


def test_frame_must_be_a_data_frame():
    with pytest.raises(TypeError, match="`frame`.*pandas DataFrame.*ndarray"):
        prepare_forecast_data(np.zeros((10, 2)), "sales", lookback=2, train_end="2020-01-01",
                              validation_end="2020-01-02")


def test_make_windows_checks_shapes():
    with pytest.raises(ValueError, match=r"\(steps, features\)"):
        make_windows(np.zeros(10), np.zeros(10), 3)
    with pytest.raises(ValueError, match="need at least 5 rows, got 4"):
        make_windows(np.zeros((4, 1)), np.zeros(4), 3, horizon=2)


def test_bundled_sales_data_is_regenerated_by_its_script(tmp_path):
    out = tmp_path / "sales.csv"
    subprocess.run(
        [sys.executable, str(SALES.with_name("make_daily_sales.py")), str(out)], check=True
    )
    assert out.read_bytes() == SALES.read_bytes()


def test_bundled_sales_data_prepares_for_the_demo():
    frame = pd.read_csv(SALES)
    assert list(frame.columns) == ["date", "sales", "price", "promotion", "holiday"]
    assert frame.date.iloc[0] == "2008-01-01" and frame.date.iloc[-1] == "2017-12-31"
    data = prepare_forecast_data(
        frame, "sales", features=["sales", "price", "promotion", "holiday"],
        known_ahead=["price", "promotion", "holiday"], lookback=28,
        train_end="2016-12-31", validation_end="2017-06-30",
    )
    assert len(data.validation) == 181 and len(data.test) == 184
    assert data.train.x.shape == (3653 - 28 - 181 - 184, 28, 4)


RETAIL = ROOT / "inst" / "extdata" / "online_retail_daily.csv"


def test_shipped_retail_sales_are_daily_sales_of_20_products():
    retail = pd.read_csv(RETAIL, dtype={"product": str}, parse_dates=["date"])
    assert list(retail.columns) == ["date", "product", "units", "price"]
    assert retail["product"].nunique() == 20
    assert not retail.duplicated(["product", "date"]).any()
    assert (retail.units > 0).all() and (retail.units == retail.units.round()).all()
    assert (retail.price > 0).all()
    assert retail.date.min() == pd.Timestamp("2009-12-01")
    assert retail.date.max() == pd.Timestamp("2011-12-09")
    assert retail.equals(retail.sort_values(["product", "date"], kind="stable"))


def test_real_product_windows_fill_closed_days():
    """One real product, started in March 2010: the days it did not sell
    are zero units at the last price paid, and every window's inputs and
    target turn back into those raw values."""
    retail = pd.read_csv(RETAIL, dtype={"product": str}, parse_dates=["date"])
    product = retail[retail["product"] == "22423"].drop(columns="product")
    data = prepare_forecast_data(
        product, "units", features=["units", "price"], lookback=14,
        train_end="2011-06-30", validation_end="2011-09-30",
        gaps={"units": "zero", "price": "previous"})
    sold = product.set_index("date")
    days = pd.date_range(sold.index[0], sold.index[-1], freq="D")
    units = sold.units.reindex(days, fill_value=0).to_numpy(dtype=float)
    price = sold.price.reindex(days).ffill().to_numpy()
    assert (units == 0).mean() > 0.1  # weekends and the Christmas closing
    windows = len(data.train) + len(data.validation) + len(data.test)
    assert windows == len(days) - 14
    for period in (data.train, data.validation, data.test):
        for i in (0, len(period) // 2, len(period) - 1):
            last = days.get_loc(period.dates[i]) - 1
            np.testing.assert_allclose(
                data.inverse_transform(period.x[i, :, 0]), units[last - 13:last + 1], atol=1e-3)
            np.testing.assert_allclose(
                data.scaler.inverse_transform(period.x[i, :, 1], "price"),
                price[last - 13:last + 1], rtol=1e-5)
            np.testing.assert_allclose(data.inverse_transform(period.y[i]), units[last + 1], atol=1e-3)


def many_series():
    """Three series of different starts and lengths, told apart by `store`."""
    parts = [series(days=120, seed=1).assign(store="a"),
             series(days=100, start="2020-01-15", seed=2).assign(store="b"),
             series(days=90, start="2020-01-10", seed=3).assign(store="c")]
    parts[2]["sales"] *= 10  # another scale: per-series scaling matters
    return pd.concat(parts, ignore_index=True)


def test_key_cuts_windows_per_series_and_scales_each():
    frame = many_series()
    data = prepare(frame, key="store", known_ahead=["promotion"])
    for period, windows in (("train", data.train), ("validation", data.validation),
                            ("test", data.test)):
        assert len(windows.key) == len(windows)
        assert list(dict.fromkeys(windows.key)) == ["a", "b", "c"]
    for store in "abc":
        one = frame[frame.store == store].drop(columns="store").reset_index(drop=True)
        x, y, dates = expected_windows(one, ["sales", "price", "promotion"], "sales", 14, 1,
                                       "2020-03-15", known_ahead=["promotion"])
        got = [w for w in (data.train, data.validation, data.test)]
        x_got = np.concatenate([w.x[w.key == store] for w in got])
        y_got = np.concatenate([w.y[w.key == store] for w in got])
        d_got = np.concatenate([w.dates[w.key == store] for w in got])
        np.testing.assert_allclose(x_got, x, rtol=1e-5, atol=1e-5)  # no window crosses series
        np.testing.assert_allclose(y_got, y, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(d_got, dates)
        raw = one.set_index("date").sales
        for w in got:
            rows = w.key == store
            np.testing.assert_allclose(data.inverse_transform(w.y[rows], key=w.key[rows]),
                                       raw.loc[w.dates[rows]].to_numpy(), rtol=1e-5)


def test_global_scaling_and_inverse_shapes():
    frame = many_series()
    data = prepare(frame, key="store", scaling="global")
    assert data.scaler.keys is None
    train = frame[frame.date <= "2020-03-15"]
    np.testing.assert_allclose(data.scaler.mean[0], train.sales.mean())
    per_series = prepare(frame, key="store")
    values = np.stack([per_series.test.y, per_series.test.y], axis=1)
    both = per_series.inverse_transform(values, key=per_series.test.key)
    assert both.shape == values.shape
    np.testing.assert_allclose(both[:, 1], per_series.inverse_transform(
        per_series.test.y, key=per_series.test.key))
    with pytest.raises(ValueError, match="`key`.*scaled on its own.*key=data.test.key"):
        per_series.inverse_transform(per_series.test.y)
    with pytest.raises(ValueError, match="`key`.*one series per row"):
        per_series.inverse_transform(per_series.test.y, key=per_series.test.key[:3])


def test_horizons_give_one_target_column_each():
    frame = series()
    data = prepare(frame, horizon=[1, 2, 3], known_ahead=["promotion"])
    assert data.train.y.shape[1] == 3 and data.train.dates.shape[1] == 3
    assert data.inputs == ["sales", "price", "promotion+1", "promotion+2", "promotion+3"]
    assert data.train.x.shape[2] == 5
    all_x = np.concatenate([data.train.x, data.validation.x, data.test.x])
    all_y = np.concatenate([data.train.y, data.validation.y, data.test.y])
    assert len(all_x) == 120 - 14 - 3 + 1
    # Training windows forecast nothing after train_end.
    assert data.train.dates.max() <= np.datetime64("2020-03-15")
    assert data.validation.dates[0, -1] > np.datetime64("2020-03-15")
    units = data.inverse_transform(all_y)
    promotion = data.scaler.inverse_transform(all_x[..., 2:], "promotion")
    for i in (0, 50, len(all_x) - 1):
        last = i + 13
        np.testing.assert_allclose(units[i], frame.sales.iloc[last + 1:last + 4], rtol=1e-5)
        np.testing.assert_allclose(promotion[i, -1], frame.promotion.iloc[last + 1:last + 4],
                                   atol=1e-5)


def test_a_series_without_windows_in_a_period_is_named():
    frame = many_series()
    short = frame[(frame.store != "c") | (frame.date <= "2020-03-25")]
    with pytest.warns(UserWarning, match="Series store='c': The test period has no windows"):
        data = prepare(short, key="store")
    assert "c" not in set(data.test.key) and "c" in set(data.validation.key)


@pytest.mark.parametrize(
    "kwargs, change, error, message",
    [
        ({"key": "shop"}, None, ValueError, "no column 'shop' for `key`"),
        ({"key": "price"}, None, ValueError, "`key`.*'price' is the date, the target or a feature"),
        ({"key": "store", "scaling": "each"}, None, ValueError, "`scaling`.*'series' or 'global'"),
        ({"key": "store"}, lambda f: f[(f.store != "b") | (f.date < "2020-01-25")],
         ValueError, "Series store='b'.*needs at least 15 rows"),
        ({"key": "store"}, lambda f: f.assign(store=f.store.where(f.index != 7)),
         ValueError, "'store' \\(the key\\) is missing at row 7"),
        ({"key": "store"}, lambda f: f.assign(date=f.date.where(f.store != "b",
                                                                f.date + pd.Timedelta(days=200))),
         ValueError, r"Series \['b'\] have no rows in the training period.*scaling='global'"),
        ({"key": "store"}, lambda f: f.drop(index=[130]), ValueError,
         "Series store='b': The series has 1 missing time step"),
        ({"horizon": [2, 1]}, None, ValueError, "`horizon`.*increasing"),
        ({"horizon": []}, None, ValueError, "`horizon`.*increasing"),
        ({"horizon": [1, 0]}, None, ValueError, "`horizon`.*positive"),
        ({"horizon": "7"}, None, TypeError, "`horizon`"),
    ],
)
def test_bad_keys_and_horizons(kwargs, change, error, message):
    frame = many_series()
    if change is not None:
        frame = change(frame)
    with pytest.raises(error, match=message):
        prepare(frame, **kwargs)
