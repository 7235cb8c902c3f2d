"""Exact re-estimation of the population statistics over a data set.

A BNLSTM refreshes its statistics from a sample of its recent training
sequences on its own (see `BNLSTM`'s `statistics_sample`). These functions
pool the batch moments over a whole data set instead, as Cooijmans et al.
(2016) estimate them.
"""

import contextlib
import math

import keras
import numpy as np
from keras import ops

from pybnlstm import _checks
from pybnlstm.layer import BNLSTM
from pybnlstm.statistics import filled_rows


class _Sums:
    """Pooled per-step moments of the batches one layer reports, per row.

    The population moments are pooled with the law of total variance: the
    variance is the sample-weighted mean of each batch's variance plus the
    spread of the batch means around the overall mean. This is exact for
    the data whatever order its batches come in, so windows cut in date
    order (whose batches each cover a few similar days) get the same
    statistics as shuffled ones.
    """

    def __init__(self, cell):
        self.cell = cell
        self.keys = list(cell.statistics)
        self.batches = np.zeros(cell.max_timesteps)
        self.samples = np.zeros(cell.max_timesteps)
        self.sums = {
            key: np.zeros(tuple(variable.shape))
            for key, variable in cell.statistics.items()
        }

    def add(self, steps, counts, stats):
        """Adds one batch: `stats` lists the moments in `self.keys` order."""
        steps = ops.convert_to_numpy(steps)
        counts = ops.convert_to_numpy(counts).astype("float64")
        valid = (steps < self.cell.max_timesteps) & (counts > 0)
        rows = steps[valid]
        n = counts[valid, None]
        self.batches[rows] += 1
        self.samples[rows] += counts[valid]
        moments = {
            key: ops.convert_to_numpy(value)[valid].astype("float64")
            for key, value in zip(self.keys, stats)
        }
        for (part, stat), value in moments.items():
            if stat == "variance":
                # Sums of squares: the batch variance plus its squared mean.
                value = value + np.square(moments[(part, "mean")])
            self.sums[(part, stat)][rows] += n * value

    def apply(self):
        """Sets the rows that saw data to the pooled moments; returns the
        largest change of each statistic."""
        seen = self.batches > 0
        n = self.samples[seen, None]
        pooled = {}
        for part, stat in self.keys:
            if stat == "mean":
                pooled[(part, stat)] = self.sums[(part, stat)][seen] / n
        for part, stat in self.keys:
            if stat == "variance":
                mean = pooled[(part, "mean")]
                pooled[(part, stat)] = np.maximum(
                    self.sums[(part, stat)][seen] / n - np.square(mean), 0.0
                )
        changes = {}
        for key, variable in self.cell.statistics.items():
            old = ops.convert_to_numpy(variable)
            new = old.copy()
            new[seen] = pooled[key]
            variable.assign(new)
            changes[variable.name] = float(np.max(np.abs(new - old)))
        counts = ops.convert_to_numpy(self.cell.moving_count).copy()
        counts[seen] = self.batches[seen]
        self.cell.moving_count.assign(counts)
        statistics = self.cell.statistics
        filled = filled_rows(statistics, self.cell.moving_count)
        for key, variable in statistics.items():
            variable.assign(filled[key])
        return {"rows": int(seen.sum()), "max_change": changes}


def bnlstm_layers(layer):
    """Every BNLSTM in a model or layer, nested models and wrappers (such
    as `Bidirectional`) included, each once."""
    found, stack, seen = [], [layer], set()
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, BNLSTM):
            found.append(current)
            continue
        children = list(getattr(current, "layers", None) or [])
        for name in ("layer", "forward_layer", "backward_layer"):
            child = getattr(current, name, None)
            if isinstance(child, keras.layers.Layer):
                children.append(child)
        stack.extend(reversed(children))
    return found


def _inputs_of(element):
    """The model input of a data element: `x` of `(x, y)` or `(x, y, w)`."""
    if isinstance(element, tuple) and len(element) in (2, 3):
        return element[0]
    return element


def _batches(data, batch_size, steps, shuffle):
    """Yields `(inputs, total)` batches from arrays, a dataset or a
    generator; `total` is the number of batches when it can be known."""
    data = _inputs_of(data)
    if hasattr(data, "shape") and hasattr(data, "__getitem__"):
        total = math.ceil(data.shape[0] / batch_size)
        if steps is not None:
            total = min(total, steps)
        if shuffle:
            data = np.asarray(data)
            order = np.random.default_rng(SHUFFLE_SEED).permutation(len(data))
        for i in range(total):
            rows = slice(i * batch_size, (i + 1) * batch_size)
            yield (data[order[rows]] if shuffle else data[rows]), total
        return
    total = steps
    if total is None and hasattr(data, "__len__"):
        total = len(data)
    for i, element in enumerate(data):
        if steps is not None and i >= steps:
            return
        yield _inputs_of(element), total


@contextlib.contextmanager
def _collecting(records):
    """Makes each layer append `(steps, counts, stats)` to its record list
    on every call."""

    def collector(record, keys):
        def collect(steps, counts, batch_stats):
            record.append((steps, counts, [batch_stats[k] for k in keys]))

        return collect

    for layer, record in records.items():
        layer._statistics_collector = collector(record, list(
            layer.cell.statistics))
    try:
        yield
    finally:
        for layer in records:
            layer._statistics_collector = None


def _forward(model, records):
    """One forward pass that returns what the layers recorded; compiled on
    TensorFlow, where an eager loop over time steps is slow."""

    def forward(inputs):
        for record in records.values():
            record.clear()
        model(inputs, training=False)
        return [list(record) for record in records.values()]

    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        return tf.function(forward, reduce_retracing=True)
    return forward


# Re-estimation draws array batches in one fixed order, so that it is
# reproducible.
SHUFFLE_SEED = 0


def recompute_statistics(model, data, batch_size=32, steps=None, verbose=1,
                         shuffle=True):
    """Re-estimates the population statistics of every BNLSTM in a model.

    Runs the model over `data` in inference mode, except that each BNLSTM
    normalizes with the batch moments of each time step (as in training,
    without dropout), and sets each time-step row of its population
    statistics to those moments pooled over all of `data`: the mean of the
    batch means, and the mean of the batch variances plus the spread of the
    batch means (the law of total variance), each batch weighted by its
    samples. For shuffled batches this is the average of the batch moments
    that Cooijmans et al. (2016) use; unlike that average, it does not
    depend on the order of the data. Trainable weights are left
    untouched, rows the data never reach keep their values, and
    `moving_count` becomes the number of batches averaged. The layers then
    count as refreshed: their next inference keeps these statistics.

    Exact inference does not need it: after training, each layer
    re-estimates its statistics from a sample of its latest training
    sequences at its first inference call. This pools them over a whole
    data set instead.

    Use the same batch size as in training, and shuffled batches (the
    default for arrays), as `fit()` draws them: the moments of `h` and `c`
    depend on the batch each sample is normalized with, and batches of
    neighbouring windows of one series are narrower than random ones.

    Args:
        model: a built Keras model or layer containing BNLSTM layers, at any
            depth (nested models, `Bidirectional`).
        data: the inputs: an array (or `(x, y)` / `(x, y, sample_weight)`
            tuple of arrays), a `tf.data.Dataset`, or any iterable of
            batches (a generator, a `keras.utils.PyDataset`).
        batch_size: batch size for arrays. Default: 32.
        steps: the number of batches to use, or `None` for all of `data`.
        verbose: 0 for silence, 1 for a progress bar (the default).
        shuffle: whether to draw array batches in a fixed random order
            (permutation seed `SHUFFLE_SEED`) rather than in the data's
            order. Default: True. Datasets and generators are read as they
            come.

    Returns:
        A dict from each BNLSTM layer's path to `{"batches", "rows",
        "max_change"}`: the batches averaged, the time-step rows
        re-estimated, and the largest absolute change of each statistic.

    Example:

    >>> model.fit(x_train, y_train, epochs=3)
    >>> changes = pybnlstm.recompute_statistics(model, x_train)
    """
    layers = bnlstm_layers(model)
    if not layers:
        raise ValueError(
            "Received a model with no BNLSTM layer for argument `model`."
        )
    if not all(layer.built for layer in layers):
        raise ValueError(
            "Received a model that is not built for argument `model`; call "
            "it on data (or build it) first."
        )
    batch_size = _checks.positive_int("batch_size", batch_size)
    steps = _checks.positive_int("steps", steps, allow_none=True)
    sums = {layer: _Sums(layer.cell) for layer in layers}
    records = {layer: [] for layer in layers}
    batches = 0
    progress = None
    with _collecting(records):
        forward = _forward(model, records)
        for inputs, total in _batches(data, batch_size, steps, shuffle):
            if progress is None:
                progress = keras.utils.Progbar(
                    total, verbose=verbose, unit_name="batch"
                )
            for layer, calls in zip(layers, forward(inputs)):
                for steps_, counts, stats in calls:
                    sums[layer].add(steps_, counts, stats)
            batches += 1
            progress.update(batches)
    if batches == 0:
        raise ValueError("Received no batch in argument `data`.")
    report = {}
    for layer in layers:
        report[layer.path] = {"batches": batches, **sums[layer].apply()}
        if layer.reference_sample is not None:
            # They match the weights as they are: nothing to refresh.
            layer.reference_sample.mark_fresh()
    return report


class RecomputeStatistics(keras.callbacks.Callback):
    """Re-estimates the BNLSTM population statistics during `fit()`.

    At the end of training, and by default before each validation pass, it
    calls `pybnlstm.recompute_statistics` on `data`: statistics pooled over
    all of it, where by default each layer re-estimates them from a sample
    of its latest training sequences.

    Place it after an `EarlyStopping(restore_best_weights=True)` in the
    callback list, so that it re-estimates for the restored weights.

    Args:
        data: the training inputs, as for `recompute_statistics`.
        batch_size: batch size for arrays; use the training batch size.
            Default: 32.
        steps: the number of batches to use, or `None` for all.
        before_validation: Boolean (default `True`): also re-estimate
            before each validation pass.
        verbose: 0 for silence (the default, beside fit's own progress
            bar), 1 for a progress bar.
        shuffle: draw array batches in a fixed random order. Default: True.

    Example:

    >>> model.fit(x, y, validation_split=0.2, epochs=10,
    ...           callbacks=[pybnlstm.RecomputeStatistics(x)])
    """

    def __init__(self, data, batch_size=32, steps=None,
                 before_validation=True, verbose=0, shuffle=True):
        super().__init__()
        self.shuffle = bool(shuffle)
        self.data = data
        self.batch_size = batch_size
        self.steps = steps
        self.before_validation = bool(before_validation)
        self.verbose = verbose
        self._training = False

    def _recompute(self):
        recompute_statistics(self.model, self.data, self.batch_size,
                             self.steps, self.verbose, self.shuffle)

    def on_train_begin(self, logs=None):
        self._training = True

    def on_test_begin(self, logs=None):
        if self._training and self.before_validation:
            self._recompute()

    def on_train_end(self, logs=None):
        self._training = False
        self._recompute()
