"""Small-batch inference latency after training, BNLSTM against
keras.layers.LSTM: what a server that answers one request at a time waits
for.

For each training batch size, a fresh process per layer builds
`Input -> recurrent layer -> Dense(1)`, trains it for one epoch at that
batch size, warms `predict_on_batch()` up at each inference batch size
(compilation excluded), then times `--calls` calls at each. The table
gives median milliseconds per call and the BNLSTM / LSTM ratio.

    python benchmarks/latency.py                          # after batch 32 and 1024
    python benchmarks/latency.py --train-batch 64 --rows 1,8 --json latency.json
"""

import argparse
import json
import statistics
import time

from speed import in_fresh_process, positive_integers

LAYERS = ("LSTM", "BNLSTM")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-batch", default="32,1024", type=counts,
                        help="training batch sizes, e.g. 32,1024")
    parser.add_argument("--rows", default="1,4", type=counts,
                        help="inference batch sizes, e.g. 1,4")
    parser.add_argument("--timesteps", type=int, default=30)
    parser.add_argument("--features", type=int, default=3)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--calls", type=int, default=200, help="timed calls per size")
    parser.add_argument("--json", help="write the table here")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def counts(text):
    values = positive_integers(text)
    if not values:
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas, got {text!r}")
    return values


def child(spec):
    """Median milliseconds per `predict_on_batch()` call at each size, in
    this fresh process."""
    request = json.loads(spec)
    import keras
    import numpy as np

    import pybnlstm

    rng = np.random.default_rng(0)
    batch = request["train_batch"]
    shape = (request["timesteps"], request["features"])
    x = rng.normal(size=(batch,) + shape).astype("float32")
    recurrent = pybnlstm.BNLSTM if request["layer"] == "BNLSTM" else keras.layers.LSTM
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input(shape), recurrent(request["units"]),
                              keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, x[:, -1, :1], batch_size=batch, epochs=1, verbose=0)
    medians = {}
    for rows in request["rows"]:
        inputs = x[:rows]
        for _ in range(3):
            model.predict_on_batch(inputs)
        times = []
        for _ in range(request["calls"]):
            started = time.perf_counter()
            model.predict_on_batch(inputs)
            times.append(time.perf_counter() - started)
        medians[str(rows)] = 1000 * statistics.median(times)
    print(json.dumps(medians))


def run(layer, train_batch, args):
    return in_fresh_process(__file__, {
        "layer": layer, "train_batch": train_batch, "rows": args.rows,
        "timesteps": args.timesteps, "features": args.features,
        "units": args.units, "calls": args.calls})


def main():
    args = parse_args()
    if args.child:
        child(args.child)
        return
    import keras

    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}; "
          f"{args.units} units, {args.timesteps} steps x {args.features} features; "
          f"median ms per predict_on_batch() over {args.calls} calls, after one epoch "
          "at each training batch size (a fresh process per layer and size)", flush=True)
    rows = []
    print(f"{'train batch':>11} {'rows':>5} {'LSTM ms':>9} {'BNLSTM ms':>10} {'ratio':>6}")
    for train_batch in args.train_batch:
        times = {layer: run(layer, train_batch, args) for layer in LAYERS}
        for size in args.rows:
            lstm, bnlstm = times["LSTM"][str(size)], times["BNLSTM"][str(size)]
            rows.append({"train_batch": train_batch, "rows": size, "lstm_ms": lstm,
                         "bnlstm_ms": bnlstm, "ratio": bnlstm / lstm})
            print(f"{train_batch:>11} {size:>5} {lstm:>9.2f} {bnlstm:>10.2f} "
                  f"{bnlstm / lstm:>6.2f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": {k: v for k, v in vars(args).items() if k != "child"},
                       "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
