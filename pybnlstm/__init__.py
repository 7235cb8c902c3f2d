"""The recurrent batch-normalized LSTM of Cooijmans et al. (2016) for Keras 3.

`BNLSTM` is a drop-in for `keras.layers.LSTM`; `BNLSTMCell` is its one-step
cell. Importing this package registers both for `.keras` serialization.
"""

from pybnlstm.cell import BNLSTMCell
from pybnlstm.layer import BNLSTM
from pybnlstm.statistics import RecomputeStatistics, recompute_statistics
from pybnlstm.weights import load_lstm_weights

__version__ = "0.1.0"

__all__ = [
    "BNLSTM",
    "BNLSTMCell",
    "RecomputeStatistics",
    "load_lstm_weights",
    "recompute_statistics",
    "__version__",
]
