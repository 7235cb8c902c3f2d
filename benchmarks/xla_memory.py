"""Where the memory of BNLSTM's XLA compilation goes (TensorFlow, CPU).

`benchmarks/speed.py --memory` finds that a fresh process training BNLSTM
holds about 150 MiB more than one training Keras' uncompiled LSTM,
whatever the shape. This script takes that apart, in its own fresh
process, in three stages run one after another:

- `trivial`: compiling and running a 3-step XLA loop over a 4x4 product,
  what any first XLA compilation in a process costs;
- `forward`: compiling and running the training recurrence's forward loop
  (`pybnlstm._xla_loops`) at the given shape;
- `backward`: its backward loop, through a gradient tape.

After each stage it prints how far the process's resident memory rose,
split into anonymous memory and pages mapped from files (code paged in
from TensorFlow's library), and how far the bytes malloc has handed out
and not had back rose. Anonymous memory that malloc no longer counts as
handed out was freed but kept by the process: working memory of the
compiler, which still raised the peak.

    python benchmarks/xla_memory.py                     # batch 32, 50 steps, 64 units, 3 features
    python benchmarks/xla_memory.py --shape 2,5,2,3 --json xla_memory.json

Linux only; the malloc figure needs glibc 2.33 or later.
"""

import argparse
import ctypes
import json
import os

from speed import resident_mib, shape_argument

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
        "fsmblks", "uordblks", "fordblks", "keepcost")]


def malloc_in_use_mib():
    """Bytes malloc has handed out and not had back, or `None` without
    glibc's `mallinfo2`."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):
        return None
    mallinfo2.restype = _Mallinfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / 2**20


def resident_parts_mib():
    """Resident memory split as the kernel counts it: anonymous, and pages
    mapped from files."""
    parts = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("RssAnon", "RssFile"):
                parts[key] = int(value.split()[0]) / 1024
    return {"anonymous": parts["RssAnon"], "file": parts["RssFile"]}


def snapshot():
    return {"resident": resident_mib(), **resident_parts_mib(),
            "malloc_in_use": malloc_in_use_mib()}


def rise(before, after):
    return {key: None if before[key] is None else after[key] - before[key]
            for key in before}


def stages(shape):
    """`(name, run)` for each stage, in order."""
    import tensorflow as tf

    from pybnlstm import _xla_loops

    b, t, u, f = (shape[k] for k in ("batch", "timesteps", "units", "features"))

    def trivial():
        tf.function(
            lambda x: tf.while_loop(lambda i, h: i < 3,
                                    lambda i, h: (i + 1, tf.tanh(h @ x)), (0, x))[1],
            jit_compile=True,
        )(tf.ones((4, 4)))

    # x, norm (x_scale then shift), h0, c0, kernel, recurrent kernel,
    # gamma_h, gamma_c, beta_c: as `training_recurrence` documents them.
    generator = tf.random.Generator.from_seed(0)
    inputs = [generator.normal(s) for s in (
        (t, b, f), (t, 8 * u), (b, u), (b, u), (f, 4 * u), (u, 4 * u), (4 * u,), (u,), (u,))]
    run = _xla_loops.training_recurrence(u, 1e-3, False, False, False)
    tape = tf.GradientTape()
    outputs = []

    def forward():
        with tape:
            tape.watch(inputs)
            outputs.append(run(*inputs, None, None))

    def backward():
        _, h, c, _ = outputs[0]
        tape.gradient([h, c], inputs)

    return [("trivial", trivial), ("forward", forward), ("backward", backward)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=shape_argument, metavar="B,T,U,F",
                        default=shape_argument("32,50,64,3"),
                        help="batch, timesteps, units, features (default 32,50,64,3)")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args(argv)

    rows = []
    for name, run in stages(args.shape):
        before = snapshot()
        run()
        rows.append({"stage": name, **rise(before, snapshot())})

    print("batch {batch}, {timesteps} steps, {units} units, {features} features; "
          "MiB each stage added".format(**args.shape))
    print(f"{'stage':<9} {'resident':>9} {'anonymous':>10} {'file':>7} {'malloc':>8}")
    for row in rows:
        malloc = "n/a" if row["malloc_in_use"] is None else f"{row['malloc_in_use']:.1f}"
        print(f"{row['stage']:<9} {row['resident']:>9.1f} {row['anonymous']:>10.1f} "
              f"{row['file']:>7.1f} {malloc:>8}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"shape": args.shape, "stages": rows}, f, indent=1)


if __name__ == "__main__":
    main()
