"""Population statistics: the debiased moving averages that training keeps,
and the statistics of one batch as they replace them.

Keras-style moving averages start at mean 0 and variance 1. The recurrent
term `h U` of a BN-LSTM has a variance near 1e-3 (the gammas start at 0.1),
so plain averages stay wrong for hundreds of updates and inference is off
by orders of magnitude. Here each time-step row counts its updates, and the
n-th update uses the weight `(1 - momentum) / (1 - momentum**n)`: the first
takes the batch statistic itself, later ones tend to the usual average.

Both functions work on values, not variables, so that a layer can run them
inside any backend's compiled function and assign the results itself.
"""

import itertools

from keras import ops


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
