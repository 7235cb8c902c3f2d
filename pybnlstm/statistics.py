"""Population statistics: the debiased moving averages that training keeps,
and their exact re-estimation over a data set.

Keras-style moving averages start at mean 0 and variance 1. The recurrent
term `h U` of a BN-LSTM has a variance near 1e-3 (the gammas start at 0.1),
so plain averages stay wrong for hundreds of updates and inference is off
by orders of magnitude. Here each time-step row counts its updates, and the
n-th update uses the weight `(1 - momentum) / (1 - momentum**n)`: the first
takes the batch statistic itself, later ones tend to the usual average.
"""

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


def fill_unvisited_rows(cell):
    """Rows never updated take the values of the nearest updated row
    before them, so that the `moving_*` weights hold what inference uses."""
    visited = ops.cast(cell.moving_count > 0, "int32")
    seen = ops.cumsum(visited)
    # The k-th visited row is where the running count first reaches k.
    source = ops.searchsorted(seen, seen, side="left")
    source = ops.where(seen > 0, source, ops.arange(cell.max_timesteps))
    for variable in cell.statistics.values():
        variable.assign(ops.take(variable, source, axis=0))


def update_population_statistics(cell, steps, counts, batch_stats):
    """One debiased moving-average update from a batch.

    Args:
        cell: the built `BNLSTMCell` that owns the statistics.
        steps: int32 `(timesteps,)`, the time-step index of each step.
        counts: float32 `(timesteps,)`, the unmasked samples at each step;
            steps without any, and steps past the last row, are left out.
        batch_stats: `{(part, stat): (timesteps, features)}` float32 batch
            moments, keyed like `cell.statistics`.
    """
    rows = ops.clip(steps, 0, cell.max_timesteps - 1)
    valid = ops.logical_and(steps < cell.max_timesteps, counts > 0)
    # A (max_timesteps, timesteps) selector turns the row-wise update into
    # one matmul per statistic, on every backend.
    selector = ops.transpose(
        ops.one_hot(rows, cell.max_timesteps)
        * ops.cast(valid, "float32")[:, None]
    )
    hit = ops.sum(selector, axis=1)
    updated_counts = cell.moving_count + hit
    weight = ops.take(update_weights(cell.momentum, updated_counts), rows)
    weight = weight[:, None]
    for key, variable in cell.statistics.items():
        # Blended as (1 - w) * old + w * new, exact when w is 1.
        rows_now = (1.0 - weight) * ops.take(variable, rows, axis=0)
        rows_now = rows_now + weight * batch_stats[key]
        kept = variable * (1.0 - hit[:, None])
        variable.assign(kept + ops.matmul(selector, rows_now))
    cell.moving_count.assign(updated_counts)
    fill_unvisited_rows(cell)
