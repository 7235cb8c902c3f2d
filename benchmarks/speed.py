"""BNLSTM against keras.layers.LSTM: training step, inference and memory.

For each shape of a grid (batch, timesteps, units, input features), builds
the same model, `Input -> recurrent layer -> Dense(1)`, with
`keras.layers.LSTM`, with `BNLSTM` and with `BNLSTM(use_xla=False)`
("loop": its recurrence step by step rather than XLA-compiled, timed in
training only), and measures in one process, alternating the models so
that drift in the machine's speed hits all alike:

- training: the median time of one training step, over `--repeats`
  passes of `--steps` batches, after a warm-up epoch that compiles; each
  step is timed alone (`train_on_batch`, the step `fit()` runs), the two
  layers taking turns batch by batch;
- inference: the median time of one batch (`predict_on_batch`), timed
  the same way in a pass of its own after each training pass, with
  statistics that match the weights;
- the first inference after training: the median time of the first
  `predict_on_batch` after each training pass, which for BNLSTM includes
  re-estimating its statistics from its reference sample (512 sequences);
- peak memory (with `--memory`): how far the resident memory of a fresh
  process rises at its peak, above what the imports and the data took,
  while it builds, compiles and trains the model (one process per layer
  and shape; Linux); and the same in a process that first trained the
  same layer on a tiny shape ("warm", LSTM and BNLSTM), which leaves out
  what the runtime sets up once per process, such as XLA's compiler
  (about 150 MiB, the same for `keras.layers.LSTM` under
  `jit_compile=True`; `xla_memory.py` takes it apart). On a GPU it is
  the peak of the GPU memory the backend allocated instead, as its
  allocator counts it.

With `--padded`, two more models run the same layers on padded data:
each sequence keeps its last 50% to 100% of steps (a length drawn per
sequence), zeros in front as `pad_sequences()` pads, and a `Masking`
layer before the recurrent one; their ratios are to the same layer on
unpadded data of the same shape.

`--backend` picks Keras' backend. On a GPU, `keras.layers.LSTM` runs
cuDNN's kernel (all three backends); the "loop" model is left out except
on TensorFlow, the only backend with a compiled training recurrence.

Prints a table of medians and BNLSTM / LSTM ratios, and the median ratio
over the grid; writes it as CSV and JSON with --csv / --json.

    python benchmarks/speed.py                   # the full grid
    python benchmarks/speed.py --quick           # one small shape
    python benchmarks/speed.py --shape 256,200,256,32
    python benchmarks/speed.py --jit true --memory --csv speed.csv
    python benchmarks/speed.py --padded
    python benchmarks/speed.py --backend jax --memory   # e.g. on a GPU
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
# `--jit`'s choices: Model.compile's jit_compile.
JIT_COMPILE = {"auto": "auto", "true": True, "false": False}
# Model name: (layer, its arguments besides units, padded data).
LAYERS = {
    "LSTM": ("LSTM", {}, False),
    "BNLSTM": ("BNLSTM", {}, False),
    "loop": ("BNLSTM", {"use_xla": False}, False),
    "LSTM padded": ("LSTM", {}, True),
    "BNLSTM padded": ("BNLSTM", {}, True),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="one small shape: batch 32, 50 steps, 64 units, 3 features")
    parser.add_argument("--shape", action="append", type=shape_argument,
                        metavar="B,T,U,F",
                        help="time this shape (batch, timesteps, units, features) "
                             "instead of the grid; may be repeated")
    parser.add_argument("--steps", type=int, default=5, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes over the batches")
    parser.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                        help="Keras backend (default: KERAS_BACKEND, else tensorflow)")
    parser.add_argument("--jit", choices=JIT_COMPILE, default="auto",
                        help="Model.compile's jit_compile (default auto: off for "
                             "TensorFlow on a CPU and for PyTorch, on for JAX)")
    parser.add_argument("--padded", action="store_true",
                        help="also time both layers on pre-padded, masked data")
    parser.add_argument("--memory", action="store_true",
                        help="also measure peak memory, in a fresh process per run")
    parser.add_argument("--csv", help="write the table here as CSV")
    parser.add_argument("--json", help="write the table here as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def positive_integers(text):
    """`"64,32"` -> `[64, 32]`; `[]` unless every value is a positive
    integer."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        return []
    return values if min(values) >= 1 else []


def shape_argument(text):
    values = positive_integers(text)
    if len(values) != len(GRID):
        raise argparse.ArgumentTypeError(
            f"expected four positive integers, batch,timesteps,units,features; got {text!r}")
    return dict(zip(GRID, values))


def shapes(args):
    if args.shape:
        return args.shape
    if args.quick:
        return [dict(batch=32, timesteps=50, units=64, features=3)]
    keys = list(GRID)
    return [dict(zip(keys, values)) for values in itertools.product(*GRID.values())]


def models_for(backend, padded=False):
    """The models to compare on `backend`: "loop" only where it differs,
    the padded ones when asked for."""
    return [m for m, (_, _, masked) in LAYERS.items()
            if (m != "loop" or backend == "tensorflow") and masked <= padded]


def build(layer, shape, jit):
    import keras

    from pybnlstm import BNLSTM

    name, arguments, masked = LAYERS[layer]
    recurrent = BNLSTM if name == "BNLSTM" else keras.layers.LSTM
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((shape["timesteps"], shape["features"])),
        *([keras.layers.Masking()] if masked else []),
        recurrent(shape["units"], **arguments),
        keras.layers.Dense(1),
    ])
    model.compile(optimizer="adam", loss="mse",
                  jit_compile=JIT_COMPILE[jit])
    return model


def data(shape, steps, padded=False):
    """`(x, y)`; padded, each sequence's first 0% to 50% of steps are
    zeros."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = shape["batch"] * steps
    x = rng.normal(size=(n, shape["timesteps"], shape["features"])).astype("float32")
    y = rng.normal(size=(n, 1)).astype("float32")
    if padded:
        length = shape["timesteps"]
        keep = rng.integers((length + 1) // 2, length + 1, size=n)
        x[np.arange(length)[None, :] < (length - keep)[:, None]] = 0.0
    return x, y


def time_shape(shape, args):
    """Median seconds per training step, per inference batch, and for the
    first inference batch after training, by model (`LAYERS`; inference
    for all but "loop").

    Times single steps, alternating the models batch by batch: this
    machine's speed changes in slices, and a whole epoch of one layer could
    fall into a slow slice that the other escapes; a `fit()` or `predict()`
    call also adds a fixed cost per call that would dilute the ratio.
    `train_on_batch` runs the same compiled step as `fit()`.
    """
    import keras

    names = models_for(keras.backend.backend(), args.padded)
    sets = {padded: data(shape, args.steps, padded) for padded in {False, args.padded}}
    inputs = {layer: sets[LAYERS[layer][2]] for layer in names}
    batch = shape["batch"]
    models = {layer: build(layer, shape, args.jit) for layer in names}
    for layer, model in models.items():  # warm-up: tracing and compilation
        x, y = inputs[layer]
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        model.predict(x, batch_size=batch, verbose=0)
    train = {layer: [] for layer in models}
    infer = {layer: [] for layer in models if layer != "loop"}
    first = {layer: [] for layer in infer}
    starts = range(0, len(inputs["LSTM"][0]), batch)

    def timed(call):
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    for _ in range(args.repeats):
        for start in starts:
            for layer, model in models.items():
                x, y = inputs[layer]
                rows = slice(start, start + batch)
                train[layer].append(timed(lambda: model.train_on_batch(x[rows], y[rows])))
        for layer in first:
            x = inputs[layer][0][:batch]
            first[layer].append(timed(lambda: models[layer].predict_on_batch(x)))
        for start in starts:
            for layer in infer:
                x = inputs[layer][0][start:start + batch]
                infer[layer].append(timed(lambda: models[layer].predict_on_batch(x)))
    return tuple({layer: statistics.median(v) for layer, v in times.items()}
                 for times in (train, infer, first))


def resident_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def gpu_memory():
    """`(reset, peak_mib)` for the backend's GPU allocator, or `None` on a
    CPU. `reset` starts a new peak and returns what is allocated now;
    `peak_mib` reads the peak since then."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            return None

        def reset():
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated() / 2**20

        return reset, lambda: torch.cuda.max_memory_allocated() / 2**20
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        if device.platform != "gpu":
            return None
        # JAX's peak cannot be reset: in a fresh process, before the model,
        # it is what the data took.
        return (lambda: device.memory_stats()["bytes_in_use"] / 2**20,
                lambda: device.memory_stats()["peak_bytes_in_use"] / 2**20)
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        return None

    def reset():
        tf.config.experimental.reset_memory_stats("GPU:0")
        return tf.config.experimental.get_memory_info("GPU:0")["current"] / 2**20

    return reset, lambda: tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20


def child(spec):
    """Runs in a fresh process: how far memory rises, at its peak, above
    what the imports and the data took, while one model is built and
    trained. On a CPU that is resident memory, which a thread samples
    every millisecond (the kernel's own peak, ru_maxrss, is set by the
    imports); on a GPU, the backend allocator's peak."""
    import threading

    import keras  # noqa: F401

    import pybnlstm  # noqa: F401

    request = json.loads(spec)
    shape, layer = request["shape"], request["layer"]
    if request["warm"]:
        tiny = dict(batch=2, timesteps=3, units=2, features=shape["features"])
        build(layer, tiny, request["jit"]).fit(*data(tiny, 1), verbose=0)
    x, y = data(shape, request["steps"])
    gpu = gpu_memory()

    def train():
        model = build(layer, shape, request["jit"])
        model.fit(x, y, batch_size=shape["batch"], epochs=2, verbose=0)

    if gpu:
        reset, peak = gpu
        before = reset()
        train()
        print(json.dumps({"peak_mib": peak() - before}))
        return
    before = resident_mib()
    highest = [before]
    done = threading.Event()

    def sample():
        while not done.is_set():
            highest[0] = max(highest[0], resident_mib())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    train()
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": highest[0] - before}))


def peak_memory(shape, layer, args, warm=False):
    spec = {"shape": shape, "layer": layer, "jit": args.jit,
            "steps": args.steps, "warm": warm}
    return in_fresh_process(__file__, spec)["peak_mib"]


def in_fresh_process(script, spec):
    """What `script --child SPEC` prints last, as JSON: one measurement in
    a fresh Python process, which holds nothing compiled or allocated by
    the measurements before it."""
    out = subprocess.run(
        [sys.executable, script, "--child", json.dumps(spec)],
        check=True, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def device_name():
    """The GPU the backend runs on, or "CPU"."""
    import keras

    backend = keras.backend.backend()
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        return device.device_kind if device.platform == "gpu" else "CPU"
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU") \
        if gpus else "CPU"


def main():
    args = parse_args()
    if args.backend:
        os.environ["KERAS_BACKEND"] = args.backend
    # The memory runs' processes share the GPU with this one.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    if args.child:
        child(args.child)
        return
    import keras

    models = models_for(keras.backend.backend())
    loop = "loop" in models
    legend = ("; 1st: the first inference batch after training (BNLSTM "
              "re-estimates its statistics there)")
    if args.padded:
        legend += ("; pad: padded data (pre-padded, masked), ratio to the same "
                   "layer unpadded")
    rows = []
    grid = shapes(args)
    device = device_name()
    print(f"Keras {keras.__version__}, backend {keras.backend.backend()} on {device}, "
          f"jit_compile={args.jit}; {args.repeats} passes of {args.steps} batches, "
          "each batch timed alone, models alternating; ratios to LSTM"
          + ("; loop: BNLSTM(use_xla=False)" if loop else "") + legend)
    header = (f"{'batch':>5} {'steps':>5} {'units':>5} {'feat':>4} | "
              f"{'fit LSTM':>9} {'fit BN':>9} {'ratio':>5}"
              + (f" {'fit loop':>9} {'ratio':>5}" if loop else "")
              + f" | {'pred LSTM':>9} {'pred BN':>9} {'ratio':>5}"
              + f" | {'1st LSTM':>9} {'1st BN':>9}"
              + (" | pad LSTM fit pred | pad BN fit pred" if args.padded else ""))
    if args.memory:
        header += (f" | {'MiB LSTM':>8} {'MiB BN':>8} {'ratio':>5}"
                   + (f" {'MiB loop':>8} {'ratio':>5}" if loop else "")
                   + f" | {'warm LSTM':>9} {'warm BN':>8} {'ratio':>5}")
    print(header, flush=True)
    for shape in grid:
        train, infer, first = time_shape(shape, args)
        row = dict(shape)
        row.update(fit_lstm_ms=1e3 * train["LSTM"], fit_bnlstm_ms=1e3 * train["BNLSTM"],
                   fit_ratio=train["BNLSTM"] / train["LSTM"])
        if loop:
            row.update(fit_loop_ms=1e3 * train["loop"],
                       fit_loop_ratio=train["loop"] / train["LSTM"])
        row.update(predict_lstm_ms=1e3 * infer["LSTM"], predict_bnlstm_ms=1e3 * infer["BNLSTM"],
                   predict_ratio=infer["BNLSTM"] / infer["LSTM"],
                   first_predict_lstm_ms=1e3 * first["LSTM"],
                   first_predict_bnlstm_ms=1e3 * first["BNLSTM"])
        if args.padded:
            for layer, key in (("LSTM", "lstm"), ("BNLSTM", "bnlstm")):
                padded = f"{layer} padded"
                row.update({
                    f"fit_padded_{key}_ms": 1e3 * train[padded],
                    f"fit_padded_{key}_ratio": train[padded] / train[layer],
                    f"predict_padded_{key}_ms": 1e3 * infer[padded],
                    f"predict_padded_{key}_ratio": infer[padded] / infer[layer],
                })
        line = (f"{shape['batch']:>5} {shape['timesteps']:>5} {shape['units']:>5} "
                f"{shape['features']:>4} | {row['fit_lstm_ms']:>7.1f}ms "
                f"{row['fit_bnlstm_ms']:>7.1f}ms {row['fit_ratio']:>5.2f}"
                + (f" {row['fit_loop_ms']:>7.1f}ms {row['fit_loop_ratio']:>5.2f}" if loop else "")
                + f" | {row['predict_lstm_ms']:>7.1f}ms {row['predict_bnlstm_ms']:>7.1f}ms "
                f"{row['predict_ratio']:>5.2f}"
                f" | {row['first_predict_lstm_ms']:>7.1f}ms "
                f"{row['first_predict_bnlstm_ms']:>7.1f}ms")
        if args.padded:
            line += "".join(
                f" | {row[f'fit_padded_{key}_ratio']:>5.2f} "
                f"{row[f'predict_padded_{key}_ratio']:>5.2f}"
                for key in ("lstm", "bnlstm"))
        if args.memory:
            memory = {layer: peak_memory(shape, layer, args) for layer in models}
            row.update(memory_lstm_mib=memory["LSTM"], memory_bnlstm_mib=memory["BNLSTM"],
                       memory_ratio=memory["BNLSTM"] / memory["LSTM"])
            line += (f" | {memory['LSTM']:>8.1f} {memory['BNLSTM']:>8.1f} "
                     f"{row['memory_ratio']:>5.2f}")
            if loop:
                row.update(memory_loop_mib=memory["loop"],
                           memory_loop_ratio=memory["loop"] / memory["LSTM"])
                line += f" {memory['loop']:>8.1f} {row['memory_loop_ratio']:>5.2f}"
            warm = {layer: peak_memory(shape, layer, args, warm=True)
                    for layer in ("LSTM", "BNLSTM")}
            row.update(warm_memory_lstm_mib=warm["LSTM"], warm_memory_bnlstm_mib=warm["BNLSTM"],
                       warm_memory_ratio=warm["BNLSTM"] / warm["LSTM"])
            line += (f" | {warm['LSTM']:>9.1f} {warm['BNLSTM']:>8.1f} "
                     f"{row['warm_memory_ratio']:>5.2f}")
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
            json.dump({"backend": keras.backend.backend(), "device": device,
                       "jit_compile": args.jit, "steps": args.steps,
                       "repeats": args.repeats, "rows": rows,
                       "median_ratios": medians}, f, indent=1)


if __name__ == "__main__":
    main()
