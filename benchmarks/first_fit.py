"""Time to a trained model: a first `fit()` and `predict()` in a fresh
process, BNLSTM against keras.layers.LSTM.

What a user waits for, compilation included: a fresh Python process builds
`Input -> recurrent layers -> Dense(1)`, trains it with `fit()` (a
validation split, a partial last batch), then calls `predict()` on a batch
of another size. Each run is a process of its own; the two layers take
turns run by run, and the table gives medians and the BNLSTM / LSTM ratio.

The default scenario: two stacked layers of 64 and 32 units, 500 windows
of 30 steps and 3 features, batch 64, `validation_split=0.1` (so 450
training windows: 7 batches of 64 and one of 2), 3 epochs, then
`predict()` on 37 windows.

    python benchmarks/first_fit.py                    # 5 runs per layer
    python benchmarks/first_fit.py --units 64,64 --runs 3
    python benchmarks/first_fit.py --json first_fit.json
    python benchmarks/first_fit.py --jit true         # both layers XLA-compiled whole
"""

import argparse
import json
import statistics
import time

from speed import JIT_COMPILE, in_fresh_process, positive_integers

LAYERS = ("LSTM", "BNLSTM")
PHASES = ("first_batch", "first_epoch", "fit", "predict", "total")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", default="64,32", type=units_argument,
                        help="units of each stacked layer, e.g. 64,32")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--timesteps", type=int, default=30)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--predict", type=int, default=37,
                        help="windows passed to predict() after fit()")
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per layer")
    parser.add_argument("--jit", choices=JIT_COMPILE, default="auto",
                        help="Model.compile's jit_compile (default auto: off for "
                             "TensorFlow on a CPU)")
    parser.add_argument("--json", help="write the runs and medians here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def units_argument(text):
    units = positive_integers(text)
    if not units:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, got {text!r}")
    return units


class Clock:
    """Seconds since the process's clock started, at each epoch's end and
    after the first training batch."""

    def __init__(self, keras, started):
        clock = self

        class Callback(keras.callbacks.Callback):
            def on_train_batch_end(self, batch, logs=None):
                if "first_batch" not in clock.marks:
                    clock.marks["first_batch"] = time.perf_counter() - started

            def on_epoch_end(self, epoch, logs=None):
                clock.marks.setdefault("first_epoch", time.perf_counter() - started)

        self.marks = {}
        self.callback = Callback()


def child(spec):
    """One run, in this fresh process: seconds from before the model is
    built to the end of each phase."""
    request = json.loads(spec)
    started = time.perf_counter()
    import keras
    import numpy as np

    import pybnlstm

    imported = time.perf_counter()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(request["samples"], request["timesteps"], request["features"]))
    x = x.astype("float32")
    y = x[:, -1, :1] - x[:, 0, 1:2]
    recurrent = pybnlstm.BNLSTM if request["layer"] == "BNLSTM" else keras.layers.LSTM
    units = request["units"]
    keras.utils.set_random_seed(0)
    begun = time.perf_counter()
    model = keras.Sequential(
        [keras.Input(x.shape[1:])]
        + [recurrent(u, return_sequences=i < len(units) - 1) for i, u in enumerate(units)]
        + [keras.layers.Dense(1)])
    model.compile("adam", "mse", jit_compile=JIT_COMPILE[request["jit"]])
    clock = Clock(keras, begun)
    model.fit(x, y, batch_size=request["batch_size"], epochs=request["epochs"],
              validation_split=0.1, callbacks=[clock.callback], verbose=0)
    fitted = time.perf_counter()
    model.predict(x[:request["predict"]], verbose=0)
    done = time.perf_counter()
    print(json.dumps({"import": imported - started, **clock.marks, "fit": fitted - begun,
                      "predict": done - fitted, "total": done - begun,
                      "jit_compile": bool(model.jit_compile)}))


def run(layer, args):
    return in_fresh_process(__file__, {
        "layer": layer, "units": args.units, "samples": args.samples,
        "timesteps": args.timesteps, "features": args.features,
        "batch_size": args.batch_size, "epochs": args.epochs,
        "predict": args.predict, "jit": args.jit})


def main():
    args = parse_args()
    if args.child:
        child(args.child)
        return
    import keras

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"jit_compile={args.jit}; units "
          f"{','.join(map(str, args.units))}; {args.samples} windows of {args.timesteps} "
          f"steps x {args.features} features, batch {args.batch_size}, "
          f"validation_split 0.1, {args.epochs} epochs, then predict() on {args.predict}; "
          f"{args.runs} fresh processes per layer, alternating; seconds from building "
          "the model (imports excluded)", flush=True)
    runs = {layer: [] for layer in LAYERS}
    for i in range(args.runs):
        for layer in LAYERS:
            runs[layer].append(run(layer, args))
            print(f"run {i + 1} {layer:>6}: " + ", ".join(
                f"{phase} {runs[layer][-1][phase]:.2f}" for phase in PHASES), flush=True)
    medians = {layer: {phase: statistics.median(r[phase] for r in runs[layer])
                       for phase in PHASES} for layer in LAYERS}
    print(f"\n{'median seconds':<14} " + " ".join(f"{p:>11}" for p in PHASES))
    for layer in LAYERS:
        print(f"{layer:<14} " + " ".join(f"{medians[layer][p]:>11.2f}" for p in PHASES))
    ratios = {p: medians["BNLSTM"][p] / medians["LSTM"][p] for p in PHASES}
    print(f"{'BNLSTM / LSTM':<14} " + " ".join(f"{ratios[p]:>11.2f}" for p in PHASES))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "child"},
                       "runs": runs, "medians": medians, "ratios": ratios}, f, indent=1)


if __name__ == "__main__":
    main()
