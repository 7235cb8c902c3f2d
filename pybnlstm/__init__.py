"""The recurrent batch-normalized LSTM of Cooijmans et al. (2016) for Keras 3.

`BNLSTM` is a drop-in for `keras.layers.LSTM`; `BNLSTMCell` is its one-step
cell. Importing this package registers both for `.keras` serialization.
`prepare_forecast_data` turns a dated pandas series into windows for them;
it and the other forecasting helpers are imported on first use, so that
the layer needs no pandas (the `forecast` extra).
"""

import importlib

from pybnlstm.cell import BNLSTMCell
from pybnlstm.layer import BNLSTM
from pybnlstm.recompute import RecomputeStatistics, recompute_statistics
from pybnlstm.weights import load_lstm_weights

__version__ = "0.1.0"

__all__ = [
    "BNLSTM",
    "BNLSTMCell",
    "ForecastData",
    "RecomputeStatistics",
    "Scaler",
    "Windows",
    "load_lstm_weights",
    "make_windows",
    "prepare_forecast_data",
    "recompute_statistics",
    "__version__",
]

_FORECASTING = {"ForecastData", "Scaler", "Windows", "make_windows", "prepare_forecast_data"}


def __getattr__(name):
    if name in _FORECASTING:
        try:
            data = importlib.import_module("pybnlstm.data")
        except ImportError as error:
            raise ImportError(
                f"pybnlstm.{name} needs pandas, which the layer itself does "
                "not: pip install 'pybnlstm[forecast]' (or pandas)."
            ) from error
        return getattr(data, name)
    raise AttributeError(f"module 'pybnlstm' has no attribute {name!r}")
