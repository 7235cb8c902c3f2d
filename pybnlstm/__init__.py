"""The recurrent batch-normalized LSTM of Cooijmans et al. (2016) for Keras 3.

`BNLSTM` is a drop-in for `keras.layers.LSTM`; `BNLSTMCell` is its one-step
cell. Importing this package registers both for `.keras` serialization.
`prepare_forecast_data` turns a dated pandas series into windows for them.
"""

from pybnlstm.cell import BNLSTMCell
from pybnlstm.data import ForecastData, Scaler, Windows, make_windows, prepare_forecast_data
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
