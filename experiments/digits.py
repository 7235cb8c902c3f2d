"""Does the BN-LSTM deliver the paper's benefit? Sequential digits and gamma.

Reruns, offline and on a CPU, the two experiments of Cooijmans et al.
(2016) that matter for users, at the scale of scikit-learn's bundled 8x8
digits (1,797 images) instead of MNIST:

1. Sequential and permuted digits: each image is read one pixel per step
   (64 steps, 1 feature), in raster order or in one fixed random order.
   Three models with the same size and budget: two stacked LSTMs, the same
   with BatchNormalization between them (the naive baseline), and two
   stacked BNLSTMs (and the same with gammas starting at 1.0). Validation accuracy per epoch (mean and spread over
   seeds), epochs to reach a target accuracy, and test accuracy at the end,
   measured with population statistics.
2. The gamma study (the paper's Figure 1): the norm of the gradient of the
   loss with respect to the hidden state at each step, for an untrained
   BN-LSTM whose gammas start at 0.1 ... 1.0, and for the batch-normalized
   tanh RNN of the paper's figure (written out here, with orthogonal
   recurrent weights), on Gaussian inputs.

Writes PNG plots, results.json and tables.md under --output.

    python experiments/digits.py             # about 5 minutes on 2 cores
    python experiments/digits.py --long      # more seeds and epochs
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from keras import ops  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

from pybnlstm import BNLSTM, BNLSTMCell  # noqa: E402

MODELS = {
    "lstm": "LSTM",
    "lstm_batchnorm": "LSTM + BatchNormalization",
    "bn_lstm": "BN-LSTM",
    "bn_lstm_gamma1": "BN-LSTM, gammas from 1.0",
}
COLORS = {
    "lstm": "#1b9e77",
    "lstm_batchnorm": "#d95f02",
    "bn_lstm": "#7570b3",
    "bn_lstm_gamma1": "#e7298a",
}
STUDIES = {"bn_lstm": "BN-LSTM", "tanh_rnn": "batch-normalized tanh RNN"}
TASKS = {"sequential": "Sequential digits", "permuted": "Permuted digits"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--units", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--target", type=float, default=0.7,
                        help="validation accuracy whose first epoch is reported")
    parser.add_argument("--long", action="store_true",
                        help="5 seeds and 30 epochs (about an hour on 2 cores)")
    parser.add_argument("--output", default="experiments/results")
    args = parser.parse_args()
    if args.long:
        args.epochs, args.seeds = 30, 5
    return args


def digit_sequences():
    """Pixels in [0, 1], shape (images, 64, 1); a fixed split 1200/300/297."""
    digits = load_digits()
    order = np.random.default_rng(0).permutation(len(digits.target))
    x = (digits.data[order] / 16.0).astype("float32")[:, :, None]
    y = digits.target[order]
    permutation = np.random.default_rng(1).permutation(64)
    split = {"train": slice(0, 1200), "validation": slice(1200, 1500), "test": slice(1500, None)}
    return {
        "sequential": {k: (x[s], y[s]) for k, s in split.items()},
        "permuted": {k: (x[s][:, permutation], y[s]) for k, s in split.items()},
    }


def build(kind, units, learning_rate):
    if kind == "bn_lstm":
        recurrent = BNLSTM
    elif kind == "bn_lstm_gamma1":
        def recurrent(units, **kwargs):
            return BNLSTM(units, gamma_initializer=1.0, **kwargs)
    else:
        recurrent = keras.layers.LSTM
    layers = [keras.Input((64, 1)), recurrent(units, return_sequences=True)]
    if kind == "lstm_batchnorm":
        layers.append(keras.layers.BatchNormalization())
    layers += [recurrent(units), keras.layers.Dense(10, activation="softmax")]
    model = keras.Sequential(layers)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def train(kind, data, seed, args):
    keras.utils.set_random_seed(seed)
    model = build(kind, args.units, args.learning_rate)
    x, y = data["train"]
    started = time.perf_counter()
    # The plain path: the BN-LSTMs re-estimate their population statistics
    # on their own before each validation and the test.
    history = model.fit(
        x, y, validation_data=data["validation"], epochs=args.epochs,
        batch_size=args.batch_size, verbose=0,
    )
    seconds = time.perf_counter() - started
    _, test_accuracy = model.evaluate(*data["test"], verbose=0)
    return {
        "val_accuracy": [float(a) for a in history.history["val_accuracy"]],
        "train_loss": [float(v) for v in history.history["loss"]],
        "train_accuracy": [float(a) for a in history.history["accuracy"]],
        "test_accuracy": float(test_accuracy),
        "seconds": seconds,
    }


def first_epoch_reaching(curve, target):
    hits = np.flatnonzero(np.asarray(curve) >= target)
    return int(hits[0]) + 1 if len(hits) else None


def hidden_gradient_norms(gamma, x, y, units=32):
    """||dL/dh_t|| for t = 1..64: one untrained BN-LSTM cell unrolled over
    a batch in training mode, with the loss on a dense readout of h_64."""
    import tensorflow as tf

    keras.utils.set_random_seed(0)
    cell = BNLSTMCell(units, max_timesteps=64, gamma_initializer=gamma)
    readout = keras.layers.Dense(10)
    cell.build((None, 1))
    readout.build((None, units))
    x = ops.convert_to_tensor(x)
    batch = x.shape[0]
    with warnings.catch_warnings(), tf.GradientTape() as tape:
        # The bare cell warns that it cannot update population statistics;
        # this study needs only training-mode steps.
        warnings.simplefilter("ignore")
        states = [ops.zeros((batch, units)), ops.zeros((batch, units)),
                  ops.zeros((batch, 1))]
        hidden = []
        for t in range(64):
            h, states = cell(x[:, t], states, training=True)
            tape.watch(h)
            hidden.append(h)
        loss = ops.mean(keras.losses.sparse_categorical_crossentropy(
            y, readout(h), from_logits=True
        ))
    grads = tape.gradient(loss, hidden)
    return [float(ops.sqrt(ops.sum(ops.square(g)))) for g in grads]


def tanh_rnn_gradient_norms(gamma, x, y, units=32):
    """||dL/dh_t|| for the batch-normalized tanh RNN of the paper's Figure 1:
    h_t = tanh(BN(h_{t-1} W_h; gamma) + BN(x_t W_x; gamma)), orthogonal
    W_h, loss on a readout of the last state."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    w_x = tf.constant(rng.normal(size=(x.shape[-1], units)), "float32")
    w_h = tf.constant(np.linalg.qr(rng.normal(size=(units, units)))[0], "float32")
    w_out = tf.constant(rng.normal(size=(units, 10)) / np.sqrt(units), "float32")

    def bn(v):
        mean, variance = tf.nn.moments(v, axes=[0])
        return gamma * (v - mean) / tf.sqrt(variance + 1e-3)

    x = tf.constant(x)
    with tf.GradientTape() as tape:
        h = tf.tanh(bn(x[:, 0] @ w_x))
        tape.watch(h)
        hidden = [h]
        for t in range(1, x.shape[1]):
            h = tf.tanh(bn(h @ w_h) + bn(x[:, t] @ w_x))
            tape.watch(h)
            hidden.append(h)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            y, h @ w_out, from_logits=True))
    return [float(tf.norm(g)) for g in tape.gradient(loss, hidden)]


def summarize(runs, args):
    """Per task and model: mean and spread of the curves, epochs to target,
    test accuracy."""
    summary = {}
    for task, by_model in runs.items():
        summary[task] = {}
        for kind, seeds in by_model.items():
            curves = np.array([run["val_accuracy"] for run in seeds])
            reached = [first_epoch_reaching(c, args.target) for c in curves]
            test = np.array([run["test_accuracy"] for run in seeds])
            train_last = np.array([run["train_accuracy"][-1] for run in seeds])
            summary[task][kind] = {
                "val_accuracy_mean": curves.mean(axis=0).tolist(),
                "val_accuracy_min": curves.min(axis=0).tolist(),
                "val_accuracy_max": curves.max(axis=0).tolist(),
                "epochs_to_target": reached,
                "train_accuracy_last_mean": float(train_last.mean()),
                "test_accuracy_mean": float(test.mean()),
                "test_accuracy_std": float(test.std()),
                "seconds_per_epoch": float(
                    np.mean([run["seconds"] for run in seeds]) / args.epochs
                ),
            }
    return summary


def tables(summary, gammas, norms, args):
    lines = [
        f"Seeds: {args.seeds}; epochs: {args.epochs}; two recurrent layers of "
        f"{args.units} units; Adam {args.learning_rate}; batch {args.batch_size}; "
        f"target validation accuracy {args.target:.0%}.",
        "",
    ]
    checkpoints = sorted({1, 3, 5, 10, args.epochs} & set(range(1, args.epochs + 1)))
    for task, by_model in summary.items():
        lines += [
            f"### {TASKS[task]}",
            "",
            "| model | " + " | ".join(f"val acc, epoch {e}" for e in checkpoints)
            + f" | epochs to {args.target:.0%} (per seed) | train acc, last epoch "
            "(training mode) | test acc (mean ± sd) | s/epoch |",
            "| --- |" + " --- |" * (len(checkpoints) + 4),
        ]
        for kind, s in by_model.items():
            reached = ", ".join("-" if r is None else str(r) for r in s["epochs_to_target"])
            cells = [f"{s['val_accuracy_mean'][e - 1]:.3f}" for e in checkpoints]
            lines.append(
                f"| {MODELS[kind]} | " + " | ".join(cells) + f" | {reached} | "
                f"{s['train_accuracy_last_mean']:.3f} | {s['test_accuracy_mean']:.3f} ± {s['test_accuracy_std']:.3f} | "
                f"{s['seconds_per_epoch']:.1f} |"
            )
        lines.append("")
    for study, by_gamma in norms.items():
        lines += [
            f"### ||dL/dh_t||, untrained {STUDIES[study]}, Gaussian inputs",
            "",
            "| gamma | t=64 | t=48 | t=32 | t=16 | t=1 | t=1 / t=64 |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for gamma, n in zip(gammas, by_gamma):
            lines.append(
                f"| {gamma:.1f} | {n[63]:.2e} | {n[47]:.2e} | {n[31]:.2e} | "
                f"{n[15]:.2e} | {n[0]:.2e} | {n[0] / n[63]:.2g} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


def plot_curves(summary, output):
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, (task, by_model) in zip(axes, summary.items()):
        for kind, s in by_model.items():
            epochs = np.arange(1, len(s["val_accuracy_mean"]) + 1)
            ax.plot(epochs, s["val_accuracy_mean"], color=COLORS[kind], lw=2, label=MODELS[kind])
            ax.fill_between(epochs, s["val_accuracy_min"], s["val_accuracy_max"],
                            color=COLORS[kind], alpha=0.2)
        ax.set(title=TASKS[task], xlabel="epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("validation accuracy (mean; band: min to max over seeds)")
    axes[0].legend(frameon=False, loc="lower right")
    fig.savefig(output / "digits_accuracy.png", dpi=110, bbox_inches="tight")


def plot_gradients(gammas, norms, output):
    fig, axes = plt.subplots(1, len(norms), figsize=(12, 4.5))
    cmap = plt.get_cmap("viridis")
    for ax, (study, by_gamma) in zip(axes, norms.items()):
        for i, (gamma, n) in enumerate(zip(gammas, by_gamma)):
            ax.plot(np.arange(1, 65), n, color=cmap(i / max(len(gammas) - 1, 1)),
                    label=f"gamma {gamma:.1f}")
        ax.set(yscale="log", xlabel="time step t", title=f"Untrained {STUDIES[study]}")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("||dL / dh_t||")
    axes[0].legend(frameon=False, fontsize=8, ncol=2)
    fig.savefig(output / "gamma_gradients.png", dpi=110, bbox_inches="tight")


def main():
    args = parse_args()
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    data = digit_sequences()

    started = time.perf_counter()
    runs = {task: {kind: [] for kind in MODELS} for task in TASKS}
    total = len(TASKS) * len(MODELS) * args.seeds
    done = 0
    for task in TASKS:
        for seed in range(args.seeds):
            for kind in MODELS:
                run = train(kind, data[task], seed, args)
                runs[task][kind].append(run)
                done += 1
                print(
                    f"[{done}/{total}] {TASKS[task]}, {MODELS[kind]}, seed {seed}: "
                    f"val acc {run['val_accuracy'][-1]:.3f}, test acc "
                    f"{run['test_accuracy']:.3f} ({run['seconds']:.0f} s, "
                    f"{time.perf_counter() - started:.0f} s so far)",
                    flush=True,
                )

    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 64, 1)).astype("float32")
    y = rng.integers(0, 10, 256)
    gammas = [round(0.1 * k, 1) for k in range(1, 11)]
    norms = {
        "bn_lstm": [hidden_gradient_norms(g, x, y) for g in gammas],
        "tanh_rnn": [tanh_rnn_gradient_norms(g, x, y) for g in gammas],
    }

    summary = summarize(runs, args)
    (output / "results.json").write_text(json.dumps(
        {"args": vars(args), "summary": summary, "runs": runs,
         "gamma_gradient_norms": {
             study: dict(zip(map(str, gammas), by_gamma))
             for study, by_gamma in norms.items()}}, indent=1))
    table = tables(summary, gammas, norms, args)
    (output / "tables.md").write_text(table)
    plot_curves(summary, output)
    plot_gradients(gammas, norms, output)
    print("\n" + table)
    print(f"Wrote {output}/: results.json, tables.md, digits_accuracy.png, "
          f"gamma_gradients.png ({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
