"""Generates daily_sales.csv, the example series of the sales demo.

One store's daily unit sales from 2008-01-01 to 2017-12-31, synthetic and
reproducible (fixed seed, NumPy only). Columns:

- date: the day, YYYY-MM-DD, every day present.
- sales: units sold (the target).
- price: the shelf price; it changes a few times a year and drops during
  promotions.
- promotion: 1 on the days of a planned promotion (runs of 3 to 10 days).
- holiday: 1 on public holidays; the store sells little on them and more on
  the days before Christmas.

Sales are a slow trend times weekly and yearly seasonality, a price
response, promotion and holiday effects, and autocorrelated noise (an AR(1)
demand shock lasting about a week), so recent history helps forecasting.

Run: python inst/extdata/make_daily_sales.py [output.csv]
"""

import csv
import datetime
import math
import sys
from pathlib import Path

import numpy as np

SEED = 20080101
START = datetime.date(2008, 1, 1)
END = datetime.date(2017, 12, 31)


def holidays(year):
    """Fixed-date holidays plus the fourth Thursday of November."""
    days = {
        datetime.date(year, 1, 1),
        datetime.date(year, 7, 4),
        datetime.date(year, 12, 25),
        datetime.date(year, 12, 26),
    }
    november = datetime.date(year, 11, 1)
    first_thursday = 1 + (3 - november.weekday()) % 7
    days.add(datetime.date(year, 11, first_thursday + 21))
    return days


def generate(seed=SEED):
    rng = np.random.default_rng(seed)
    days = [START + datetime.timedelta(d) for d in range((END - START).days + 1)]
    n = len(days)
    t = np.arange(n) / 365.25

    holiday_days = set().union(*(holidays(y) for y in range(START.year, END.year + 1)))
    holiday = np.array([d in holiday_days for d in days], dtype=int)

    # Promotions: about one a month, each 3 to 10 days long.
    promotion = np.zeros(n, dtype=int)
    start = int(rng.integers(5, 30))
    while start < n:
        promotion[start:start + int(rng.integers(3, 11))] = 1
        start += int(rng.integers(20, 45))

    # The list price steps up a few times a year; promotions take 15-25% off.
    steps = rng.choice([0.0, 0.25, 0.5], size=n, p=[0.997, 0.002, 0.001])
    list_price = 4.99 + np.cumsum(steps)
    discount = np.where(promotion == 1, rng.uniform(0.15, 0.25, n), 0.0)
    price = np.round(list_price * (1 - discount), 2)

    weekday = np.array([d.weekday() for d in days])
    weekly = np.array([0.85, 0.80, 0.85, 0.95, 1.15, 1.35, 1.05])[weekday]
    yearly = 1 + 0.18 * np.sin(2 * math.pi * (t - 0.3)) + 0.06 * np.cos(4 * math.pi * t)
    trend = 120 * (1 + 0.05 * t) + 8 * np.sin(2 * math.pi * t / 4.5)
    elasticity = (price / list_price) ** -1.8
    christmas = np.array(
        [1.6 if d.month == 12 and 15 <= d.day <= 23 else 1.0 for d in days]
    )
    closed = np.where(holiday == 1, 0.3, 1.0)

    shock = np.zeros(n)
    innovations = rng.normal(0, 0.06, n)
    for i in range(1, n):
        shock[i] = 0.85 * shock[i - 1] + innovations[i]

    mean = trend * weekly * yearly * elasticity * christmas * closed * np.exp(shock)
    sales = rng.poisson(mean)
    return days, sales, price, promotion, holiday


def write(path):
    days, sales, price, promotion, holiday = generate()
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["date", "sales", "price", "promotion", "holiday"])
        for row in zip(days, sales, price, promotion, holiday):
            day, units, cost, promo, hol = row
            out.writerow([day.isoformat(), int(units), f"{cost:.2f}", int(promo), int(hol)])


if __name__ == "__main__":
    write(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).with_name("daily_sales.csv"))
