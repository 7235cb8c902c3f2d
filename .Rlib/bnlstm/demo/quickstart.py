"""A short training example: a BN-LSTM against Keras' LSTM on a noisy sine
forecast, all trained with the same seed and budget. The BN-LSTM runs twice:
with its moving-average population statistics, and with statistics
re-estimated exactly (pybnlstm.RecomputeStatistics).

Run: .venv/bin/python inst/demo/quickstart.py
"""

import time

import keras
import numpy as np

import pybnlstm


def windows(series, lookback):
    x = np.stack([series[i:i + lookback] for i in range(len(series) -
                                                        lookback)])
    return x[:, :, None].astype("float32"), series[lookback:, None]


def model_with(recurrent_layer, lookback):
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((lookback, 1)),
        recurrent_layer(32),
        keras.layers.Dense(1),
    ])


def main(lookback=30, epochs=5):
    rng = np.random.default_rng(0)
    t = np.arange(3000)
    series = (np.sin(2 * np.pi * t / 50) + 0.5 * np.sin(2 * np.pi * t / 7)
              + 0.2 * rng.normal(size=t.size)).astype("float32")
    x, y = windows(series, lookback)
    split = int(0.8 * len(x))
    print(f"{len(x)} windows of {lookback} steps; training on {split}")
    runs = (
        ("keras LSTM", keras.layers.LSTM, []),
        ("BNLSTM", pybnlstm.BNLSTM, []),
        ("BNLSTM + recompute", pybnlstm.BNLSTM,
         [pybnlstm.RecomputeStatistics(x[:split], batch_size=64)]),
    )
    for name, layer, callbacks in runs:
        model = model_with(layer, lookback)
        model.compile(keras.optimizers.Adam(1e-3), "mse")
        start = time.perf_counter()
        history = model.fit(x[:split], y[:split], epochs=epochs,
                            batch_size=64, verbose=2, callbacks=callbacks,
                            validation_data=(x[split:], y[split:]))
        seconds = time.perf_counter() - start
        print(f"{name:19s} validation MSE per epoch: "
              + " ".join(f"{v:.4f}" for v in history.history["val_loss"])
              + f"  ({seconds:.1f} s)")


if __name__ == "__main__":
    main()
