"""Population statistics: the debiased moving averages that training keeps,
and the statistics of one batch as they replace them.

Keras-style moving averages start at mean 0 and variance 1. The recurrent
term `h U` of a BN-LSTM has a variance near 1e-3 (the gammas start at 0.1),
so plain averages stay wrong for hundreds of updates and inference is off
by orders of magnitude. Here each time-step row counts its updates, and the
n-th update uses the weight `(1 - momentum) / (1 - momentum**n)`: the first
takes the batch statistic itself, later ones tend to the usual average.

The update functions work on values, not variables, so that a layer can
run them inside any backend's compiled function and assign the results
itself. `PopulationStatistics`, which `BNLSTM` inherits, does that, and
re-estimates the statistics from the reference sample (`sample.py`)
before inference.
"""

import itertools

from keras import ops

from pybnlstm import _loop, _replicas


def update_weights(momentum, counts):
    """The weight of the n-th update for each count n (0 where n is 0)."""
    counts = ops.cast(counts, "float32")
    if momentum == 1.0:
        # The limit of the debiased weight: a running mean.
        weight = 1.0 / ops.maximum(counts, 1.0)
    else:
        weight = (1.0 - momentum) / ops.maximum(
            1.0 - ops.power(momentum, counts), 1e-12
        )
    # Exactly 1 at the first update, which then takes the batch statistic.
    weight = ops.where(counts == 1, 1.0, weight)
    return ops.where(counts > 0, weight, 0.0)


def filled_rows(statistics, moving_count):
    """`statistics` with each row never updated (count 0) replaced by the
    nearest updated row before it, so that the stored values are what
    inference uses."""
    keys, packed = _packed(statistics)
    return _unpacked(keys, statistics, _filled(packed, moving_count))


def _packed(statistics):
    """`(keys, matrix)`: the statistics side by side in one matrix. Each
    op traced and run per statistic costs Python time when a step is
    traced and executor time every step: one update for all of them
    costs a sixth of one per statistic."""
    keys = list(statistics)
    return keys, ops.concatenate([statistics[k] for k in keys], axis=-1)


def _unpacked(keys, like, packed):
    """`packed` split back into `{key: value}`, widths as in `like`."""
    ends = list(itertools.accumulate(like[k].shape[-1] for k in keys))
    return dict(zip(keys, ops.split(packed, ends[:-1], axis=-1)))


def _filled(packed, moving_count):
    visited = ops.cast(moving_count > 0, "int32")
    seen = ops.cumsum(visited)
    # The k-th visited row is where the running count first reaches k.
    source = ops.searchsorted(seen, seen, side="left")
    source = ops.where(seen > 0, source, ops.arange(seen.shape[0]))
    return ops.take(packed, source, axis=0)


def _row_selector(steps, counts, max_timesteps):
    """`(rows, selector, hit)`: each step's row, the `(max_timesteps,
    timesteps)` 0/1 matrix that sends a step's values to its row (steps
    with no sample, and steps past the last row, send nothing), and how
    many steps each row receives. A matmul with it makes a row-wise
    update one product, on every backend."""
    rows = ops.clip(steps, 0, max_timesteps - 1)
    valid = ops.logical_and(steps < max_timesteps, counts > 0)
    one_hot = ops.one_hot(rows, max_timesteps, dtype="float32")
    selector = ops.transpose(one_hot * ops.cast(valid, "float32")[:, None])
    return rows, selector, ops.sum(selector, axis=1)


def moving_average_update(statistics, moving_count, momentum, steps, counts,
                          batch_stats):
    """One debiased moving-average update from a batch.

    Args:
        statistics: `{(part, stat): (max_timesteps, features)}` float32
            values of the population statistics.
        moving_count: float32 `(max_timesteps,)`, the updates of each row.
        momentum: the momentum of the averages.
        steps: int32 `(timesteps,)`, the time-step index of each step.
        counts: float32 `(timesteps,)`, the unmasked samples at each step;
            steps without any, and steps past the last row, are left out.
        batch_stats: `{(part, stat): (timesteps, features)}` float32 batch
            moments, keyed like `statistics`.

    Returns:
        `(statistics, moving_count)`, updated, with rows never updated
        filled in (see `filled_rows`).
    """
    max_timesteps = moving_count.shape[0]
    keys, value = _packed(statistics)
    batch = ops.concatenate([batch_stats[k] for k in keys], axis=-1)
    rows, selector, hit = _row_selector(steps, counts, max_timesteps)
    updated_counts = moving_count + hit
    weight = ops.take(update_weights(momentum, updated_counts), rows)
    weight = weight[:, None]
    # Blended as (1 - w) * old + w * new, exact when w is 1.
    rows_now = (1.0 - weight) * ops.take(value, rows, axis=0) + weight * batch
    updated = value * (1.0 - hit[:, None]) + ops.matmul(selector, rows_now)
    filled = _filled(updated, updated_counts)
    return _unpacked(keys, statistics, filled), updated_counts


def batch_replacement(statistics, steps, counts, batch_stats):
    """The rows a batch reaches set to its moments exactly; the others as
    they were. Arguments as for `moving_average_update`."""
    keys, value = _packed(statistics)
    batch = ops.concatenate([batch_stats[k] for k in keys], axis=-1)
    _, selector, hit = _row_selector(steps, counts, value.shape[0])
    replaced = value * (1.0 - hit[:, None]) + ops.matmul(selector, batch)
    return _unpacked(keys, statistics, replaced)


class PopulationStatistics:
    """The population statistics of a `BNLSTM`: the moving averages that
    training updates, the reference sample it keeps, and the re-estimation
    from that sample before inference."""

    def _update_statistics(self, steps, counts, batch_stats):
        cell = self.cell
        statistics, moving_count = moving_average_update(
            _values(cell.statistics), _value(cell.moving_count),
            cell.momentum, steps, counts, batch_stats,
        )
        for key, variable in cell.statistics.items():
            variable.assign(statistics[key])
        cell.moving_count.assign(moving_count)

    def _remember(self, x, weights, h0, c0, offset):
        """Keeps the batch in the reference sample (see `ReferenceSample`):
        a stateful layer only a batch whose steps reach a row of their
        own. With synchronized statistics, the global batch: every
        replica then refreshes from the same sample, as one device
        would."""
        if self.reference_sample is None:
            return
        keep = True
        if self.stateful:
            keep = offset < self.cell.max_timesteps
        if self.cell.synchronized:
            if weights is None:
                weights = ops.ones_like(x[..., :1])
            x, weights, h0, c0 = (
                _replicas.replica_concat(t) for t in (x, weights, h0, c0)
            )
        self.reference_sample.remember(x, weights, h0, c0, offset, keep)

    def _current_statistics(self):
        """The population statistics for inference: re-estimated from the
        reference sample first if the layer trained since they were last
        (in the traced function, a conditional that costs nothing once
        they are fresh)."""
        sample = self.reference_sample
        if sample is None:
            return None
        refresh = self._refresh_function()

        def refreshed():
            # No gradient flows into the statistics: a tape that recorded
            # the compiled loops would fail ("TensorList crossing the
            # XLA/TF boundary") where it could not differentiate them.
            with _loop.unrecorded():
                return refresh()

        statistics = _loop.cond(
            sample.stale, refreshed, lambda: _values(self.cell.statistics)
        )
        statistics = {k: ops.stop_gradient(v) for k, v in statistics.items()}
        for key, variable in self.cell.statistics.items():
            variable.assign(statistics[key])
        sample.mark_fresh()
        return statistics

    def _refreshed_statistics(self):
        """The population statistics with each row the reference sample
        reaches replaced by its moments under the current weights: one
        pass over the sample as one batch, normalized with its batch
        moments as in training, without dropout or gradient, with batch
        moments of the local replica only. On TensorFlow it runs a
        compiled loop of its own, which XLA compiles once per layer shape
        in a process."""
        x, weights, h0, c0, offset = self.reference_sample.contents()
        _, _, (steps, counts, batch_stats) = self._recurrence(
            ops.cast(x, self.compute_dtype), weights,
            (ops.cast(h0, self.compute_dtype),
             ops.cast(c0, self.compute_dtype), offset),
            batch_norm=True, statistics=None, dropout_masks=(None, None),
            return_sequences=False, synchronized=False, differentiated=False,
        )
        return batch_replacement(
            _values(self.cell.statistics), steps, counts, batch_stats
        )

    @property
    def statistics_stale(self):
        """Whether the layer trained since its population statistics were
        last re-estimated (they are, at its next inference call); `None`
        where that is not known yet (inside a traced function)."""
        sample = self.reference_sample
        if sample is None or not sample.built:
            return False
        if _loop.stateless():
            return None
        return _loop.concrete(sample.stale)

    def refresh_statistics(self):
        """Re-estimates the population statistics from the reference
        sample now, if the layer trained since they last were. Inference
        does this by itself; so do saving, exporting and reading the
        weights. Inside a traced function it does nothing."""
        if self.statistics_stale:
            self._current_statistics()


def _values(variables):
    """`{key: variable}` as tensors, as `_value` gives them."""
    return {key: _value(v) for key, v in variables.items()}


def _value(variable):
    """A statistics variable as a float32 tensor, whatever its dtype
    (float64 under a float64 policy): the statistics are computed in
    float32. A tensor, not the variable: JAX would capture a variable
    passed to one of its functions as a constant of the compiled step."""
    return ops.cast(ops.convert_to_tensor(variable), "float32")

