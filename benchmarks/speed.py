"""BNLSTM against keras.layers.LSTM: training step, inference and memory.

For each shape of a grid (batch, timesteps, units, input features), builds
the same model, `Input -> recurrent layer -> Dense(1)`, with
`keras.layers.LSTM`, with `BNLSTM` and with `BNLSTM(use_xla=False)`
("loop": its training recurrence step by step rather than XLA-compiled;
its inference is the same as `BNLSTM`'s, so it is timed in training
only), and measures in one process, alternating the models so that drift
in the machine's speed hits all alike:

- training: the median time of one training step, over `--repeats`
  passes of `--steps` batches, after a warm-up epoch that compiles; each
  step is timed alone (`train_on_batch`, the step `fit()` runs), the two
  layers taking turns batch by batch;
- inference: the median time of one batch (`predict_on_batch`), timed
  the same way;
- peak memory (with `--memory`): how far the resident memory of a fresh
  process rises at its peak, above what the imports and the data took,
  while it builds, compiles and trains the model (one process per layer
  and shape; Linux); and the same in a process that first trained the
  same layer on a tiny shape ("warm", LSTM and BNLSTM), which leaves out
  what the runtime sets up once per process, such as XLA's compiler
  (about 150 MiB, the same for `keras.layers.LSTM` under
  `jit_compile=True`).

Prints a table of medians and BNLSTM / LSTM ratios, and the median ratio
over the grid; writes it as CSV and JSON with --csv / --json.

    python benchmarks/speed.py                   # the full grid
    python benchmarks/speed.py --quick           # one small shape
    python benchmarks/speed.py --jit --memory --csv speed.csv
"""

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time

GRID = {
    "batch": (32, 256),
    "timesteps": (50, 200),
    "units": (64, 256),
    "features": (3, 32),
}
# Model name: (layer, its arguments besides units).
LAYERS = {
    "LSTM": ("LSTM", {}),
    "BNLSTM": ("BNLSTM", {}),
    "loop": ("BNLSTM", {"use_xla": False}),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small shape: batch 32, 50 steps, 64 units, 3 features")
    parser.add_argument("--steps", type=int, default=5, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the batches")
    parser.add_argument("--jit", action="store_true", help="compile with jit_compile=True (XLA)")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory, in a fresh process per run")
    parser.add_argument("--csv", help="write the table here as CSV")
    parser.add_argument("--json", help="write the table here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def shapes(quick):
    if quick:
        return [dict(batch=32, timesteps=50, units=64, features=3)]
    keys = list(GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*GRID.values())]


def build(layer, shape, jit):
    import keras

    from pybnlstm import BNLSTM

    name, arguments = LAYERS[layer]
    recurrent = BNLSTM if name == "BNLSTM" else keras.layers.LSTM
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((shape["timesteps"], shape["features"])),
        recurrent(shape["units"], **arguments),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse", jit_compile=jit)
    return model


def data(shape, steps):
    import numpy as np

    rng = np.random.default_rng(0)
    n = shape["batch"] * steps
    x = rng.normal(size=(n, shape["timesteps"], shape["features"])).astype("float32")
    return x, rng.normal(size=(n, 1)).astype("float32")


def time_shape(shape, args):
    """Median seconds per training step and per inference batch, by model
    (`LAYERS`; inference for LSTM and BNLSTM only).

    Times single steps, alternating the models batch by batch: this
    machine's speed changes in slices, and a whole epoch of one layer could
    fall into a slow slice that the other escapes; a `fit()` or `predict()`
    call also adds a fixed cost per call that would dilute the ratio.
    `train_on_batch` runs the same compiled step as `fit()`.
    """
    x, y = data(shape, args.steps)
    batch = shape["batch"]
    models = {layer: build(layer, shape, args.jit) for layer in LAYERS}
    for model in models.values():  # warm-up: tracing and compilation
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        model.predict(x, batch_size=batch, verbose=0)
    train = {layer: [] for layer in LAYERS}
    infer = {layer: [] for layer in ("LSTM", "BNLSTM")}
    for _ in range(args.repeats):
        for start in range(0, len(x), batch):
            xb, yb = x[start:start + batch], y[start:start + batch]
            for layer, model in models.items():
                started = time.perf_counter()
                model.train_on_batch(xb, yb)
                train[layer].append(time.perf_counter() - started)
                if layer not in infer:
                    continue
                started = time.perf_counter()
                model.predict_on_batch(xb)
                infer[layer].append(time.perf_counter() - started)
    return (
        {layer: statistics.median(v) for layer, v in train.items()},
        {layer: statistics.median(v) for layer, v in infer.items()},
    )


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(spec):
    """Runs in a fresh process: how far resident memory rises, at its peak,
    above what the imports and the data took, while one model is built and
    trained. A thread samples it every millisecond (the kernel's own peak,
    ru_maxrss, is set by the imports)."""
    import threading

    import keras  # noqa: F401

    import pybnlstm  # noqa: F401

    request = json.loads(spec)
    shape, layer = request["shape"], request["layer"]
    if request["warm"]:
        tiny = dict(batch=2, timesteps=3, units=2, features=shape["features"])
        build(layer, tiny, request["jit"]).fit(*data(tiny, 1), verbose=0)
    x, y = data(shape, request["steps"])
    before = resident_mib()
    peak = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], resident_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    model = build(layer, shape, request["jit"])
    model.fit(x, y, batch_size=shape["batch"], epochs=2, verbose=0)
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": peak[0] - before}))


def peak_memory(shape, layer, args, warm=False):
    spec = json.dumps({"shape": shape, "layer": layer, "jit": args.jit,
                       "steps": args.steps, "warm": warm})
    out = subprocess.run(
        [sys.executable, __file__, "--child", spec],
        check=True, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]


def main():
    args = parse_args()
    if args.child:
        child(args.child)
        return
    import keras

    rows = []
    grid = shapes(args.quick)
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()}, "
          f"jit_compile={args.jit}; {args.repeats} passes of {args.steps} batches, "
          "each batch timed alone, models alternating; ratios to LSTM; "
          "loop: BNLSTM(use_xla=False)")
    header = (f"{'batch':>5} {'steps':>5} {'units':>5} {'feat':>4} | "
              f"{'fit LSTM':>9} {'fit BN':>9} {'ratio':>5} {'fit loop':>9} {'ratio':>5} | "
              f"{'pred LSTM':>9} {'pred BN':>9} {'ratio':>5}")
    if args.memory:
        header += (f" | {'MiB LSTM':>8} {'MiB BN':>8} {'ratio':>5} "
                   f"{'MiB loop':>8} {'ratio':>5}")
        header += f" | {'warm LSTM':>9} {'warm BN':>8} {'ratio':>5}"
    print(header, flush=True)
    for shape in grid:
        train, infer = time_shape(shape, args)
        row = dict(shape)
        row.update(
            fit_lstm_ms=1e3 * train["LSTM"], fit_bnlstm_ms=1e3 * train["BNLSTM"],
            fit_ratio=train["BNLSTM"] / train["LSTM"],
            fit_loop_ms=1e3 * train["loop"], fit_loop_ratio=train["loop"] / train["LSTM"],
            predict_lstm_ms=1e3 * infer["LSTM"], predict_bnlstm_ms=1e3 * infer["BNLSTM"],
            predict_ratio=infer["BNLSTM"] / infer["LSTM"],
        )
        line = (f"{shape['batch']:>5} {shape['timesteps']:>5} {shape['units']:>5} "
                f"{shape['features']:>4} | {row['fit_lstm_ms']:>7.1f}ms "
                f"{row['fit_bnlstm_ms']:>7.1f}ms {row['fit_ratio']:>5.2f} "
                f"{row['fit_loop_ms']:>7.1f}ms {row['fit_loop_ratio']:>5.2f} | "
                f"{row['predict_lstm_ms']:>7.1f}ms {row['predict_bnlstm_ms']:>7.1f}ms "
                f"{row['predict_ratio']:>5.2f}")
        if args.memory:
            memory = {layer: peak_memory(shape, layer, args) for layer in LAYERS}
            row.update(memory_lstm_mib=memory["LSTM"], memory_bnlstm_mib=memory["BNLSTM"],
                       memory_ratio=memory["BNLSTM"] / memory["LSTM"],
                       memory_loop_mib=memory["loop"],
                       memory_loop_ratio=memory["loop"] / memory["LSTM"])
            warm = {layer: peak_memory(shape, layer, args, warm=True)
                    for layer in ("LSTM", "BNLSTM")}
            row.update(warm_memory_lstm_mib=warm["LSTM"], warm_memory_bnlstm_mib=warm["BNLSTM"],
                       warm_memory_ratio=warm["BNLSTM"] / warm["LSTM"])
            line += (f" | {memory['LSTM']:>8.1f} {memory['BNLSTM']:>8.1f} "
                     f"{row['memory_ratio']:>5.2f} {memory['loop']:>8.1f} "
                     f"{row['memory_loop_ratio']:>5.2f} | {warm['LSTM']:>9.1f} "
                     f"{warm['BNLSTM']:>8.1f} {row['warm_memory_ratio']:>5.2f}")
        print(line, flush=True)
        rows.append(row)

    medians = {key: statistics.median(r[key] for r in rows)
               for key in rows[0] if key.endswith("_ratio")}
    print("\nMedian BNLSTM / LSTM ratio over the grid: " + ", ".join(
        f"{key.removesuffix('_ratio')} {value:.2f}" for key, value in medians.items()))
    if args.csv:
        import csv

        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": keras.backend.backend(), "jit_compile": args.jit,
                       "steps": args.steps, "repeats": args.repeats,
                       "rows": rows, "median_ratios": medians}, f, indent=1)


if __name__ == "__main__":
    main()
