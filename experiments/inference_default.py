"""Is `predict()` after a plain `fit()` as good as the weights?

Trains BN-LSTM classifiers on sequential 8x8 digits (64 steps of one pixel,
the split of `digits.py`) with nothing but `fit()`, and after each epoch
measures validation accuracy four ways, each from the same weights and the
same state of the population statistics:

- default: `predict()` as a user calls it; the layers refresh their
  statistics from their reference samples first;
- moving averages: the statistics the layers kept before this refresh
  existed (a twin model with `statistics_sample=0`, trained from the same
  seed, so with the same weights);
- re-estimated: after `recompute_statistics` over the whole training set
  (batch 64, shuffled), the paper's estimate;
- training mode: batch statistics of each validation batch of 64.

Models: one `BNLSTM(48)` (`single`), two stacked layers of 48 and 32
(`stacked`), and `Bidirectional(BNLSTM(32))` (`bidirectional`); Adam 2e-3,
batch 64.

    python experiments/inference_default.py                 # about 12 minutes
    python experiments/inference_default.py --models single --seeds 1

Writes `inference_default.json` and `inference_default.md` under --output.
"""

import argparse
import json
import time
from pathlib import Path

import keras
import numpy as np

import pybnlstm
from digits import digit_sequences

MODELS = ("single", "stacked", "bidirectional")
WAYS = {
    "default": "`predict()` (default)",
    "moving": "moving averages only",
    "recomputed": "after `recompute_statistics`",
    "training": "training mode (batch statistics)",
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS,
                        default=list(MODELS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--statistics-sample", type=int, default=512)
    parser.add_argument("--output", default="experiments/results")
    return parser.parse_args()


def build(kind, statistics_sample):
    def recurrent(units, **kwargs):
        return pybnlstm.BNLSTM(units, statistics_sample=statistics_sample,
                               **kwargs)

    if kind == "single":
        layers = [recurrent(48)]
    elif kind == "stacked":
        layers = [recurrent(48, return_sequences=True), recurrent(32)]
    else:
        layers = [keras.layers.Bidirectional(recurrent(32))]
    model = keras.Sequential(
        [keras.Input((64, 1)), *layers,
         keras.layers.Dense(10, activation="softmax")])
    model.compile(keras.optimizers.Adam(2e-3),
                  "sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def accuracy(model, x, y, batch_size):
    return float((model.predict(x, batch_size=batch_size, verbose=0)
                  .argmax(-1) == y).mean())


def training_mode_accuracy(model, x, y, batch_size):
    hits = [keras.ops.convert_to_numpy(
        model(x[i:i + batch_size], training=True)).argmax(-1)
        == y[i:i + batch_size] for i in range(0, len(x), batch_size)]
    return float(np.concatenate(hits).mean())


def measure(model, twin, data, args):
    """The four accuracies; the model's statistics are left as `predict()`
    left them."""
    x, y = data["train"]
    xv, yv = data["validation"]
    state = [v.numpy() for v in model.non_trainable_variables]
    result = {"training": training_mode_accuracy(model, xv, yv,
                                                  args.batch_size)}
    for v, value in zip(model.non_trainable_variables, state):
        v.assign(value)
    result["moving"] = accuracy(twin, xv, yv, args.batch_size)
    started = time.perf_counter()
    result["default"] = accuracy(model, xv, yv, args.batch_size)
    result["default_seconds"] = time.perf_counter() - started
    refreshed = [v.numpy() for v in model.non_trainable_variables]
    started = time.perf_counter()
    pybnlstm.recompute_statistics(model, x, batch_size=args.batch_size,
                                  verbose=0)
    result["recompute_seconds"] = time.perf_counter() - started
    result["recomputed"] = accuracy(model, xv, yv, args.batch_size)
    for v, value in zip(model.non_trainable_variables, refreshed):
        v.assign(value)
    return result


def run(kind, seed, data, args):
    models = []
    for sample in (args.statistics_sample, 0):
        keras.utils.set_random_seed(seed)
        models.append(build(kind, sample))
    model, twin = models
    x, y = data["train"]
    epochs = []
    for epoch in range(args.epochs):
        for m in (model, twin):
            keras.utils.set_random_seed(seed * 1000 + epoch)
            m.fit(x, y, batch_size=args.batch_size, epochs=1, verbose=0)
        epochs.append(measure(model, twin, data, args))
        print(f"{kind}, seed {seed}, epoch {epoch + 1}: "
              + ", ".join(f"{k} {epochs[-1][k]:.3f}" for k in WAYS),
              flush=True)
    return epochs


def table(kind, runs, args):
    lines = [
        f"#### {kind}: validation accuracy after each epoch, mean over "
        f"{args.seeds} seeds",
        "",
        "| statistics | " + " | ".join(
            str(e + 1) for e in range(args.epochs)) + " |",
        "| --- |" + " --- |" * args.epochs,
    ]
    for way, label in WAYS.items():
        cells = [np.mean([r[e][way] for r in runs])
                 for e in range(args.epochs)]
        lines.append(f"| {label} | "
                     + " | ".join(f"{c:.3f}" for c in cells) + " |")
    gaps = np.array([[r[e]["recomputed"] - r[e]["default"]
                      for e in range(args.epochs)] for r in runs])
    old = np.array([[r[e]["recomputed"] - r[e]["moving"]
                     for e in range(args.epochs)] for r in runs])
    lines += [
        "",
        f"Re-estimated minus default, over {gaps.size} epochs: mean "
        f"{100 * gaps.mean():+.1f} points, largest "
        f"{100 * np.abs(gaps).max():.1f}. Re-estimated minus moving "
        f"averages: mean {100 * old.mean():+.1f}, largest "
        f"{100 * np.abs(old).max():.1f}.",
        "",
    ]
    return "\n".join(lines)


def main():
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    data = digit_sequences()["sequential"]
    results, text = {}, []
    for kind in args.models:
        results[kind] = [run(kind, seed, data, args)
                         for seed in range(args.seeds)]
        text.append(table(kind, results[kind], args))
    (output / "inference_default.json").write_text(json.dumps(
        {"args": vars(args), "results": results}, indent=1))
    (output / "inference_default.md").write_text("\n".join(text))
    print("\n" + "\n".join(text))


if __name__ == "__main__":
    main()
