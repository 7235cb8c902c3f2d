"""The sequence loop of a BNLSTM: the steps in processing order (reversed,
masked steps aligned), dropout, the loop over the cell's step, and the
outputs in Keras' masking conventions. `BNLSTM` inherits it; the compiled
path (`xla.py`) replaces the loop itself where it applies."""

import itertools
import warnings

import keras
from keras import ops

from pybnlstm import _loop, _replicas


class SequenceLoop:
    """The recurrence over a whole batch of sequences, for `BNLSTM`."""

    def _processing_order(self, sequences, mask):
        """The inputs in the compute dtype, steps in the order they are
        processed: reversed with `go_backwards`, and, with a mask, each
        sequence's real steps first (see `_Alignment`)."""
        x = ops.cast(sequences, self.compute_dtype)
        if self.go_backwards:
            x = ops.flip(x, axis=1)
            mask = None if mask is None else ops.flip(mask, axis=1)
        if mask is None:
            return x, None
        alignment = _Alignment(mask, x.dtype)
        return alignment.gather(x), alignment

    def _dropout_masks(self, training, x):
        """`(input_mask, recurrent_mask)` for a training call, `None` where
        there is no dropout."""
        batch_size = ops.shape(x)[0]
        input_mask = recurrent_mask = None
        if training and self.dropout > 0:
            input_mask = self._dropout_mask((batch_size, x.shape[-1]))
        if training and self.recurrent_dropout > 0:
            recurrent_mask = self._dropout_mask(
                (batch_size, self.cell.units), self.recurrent_dropout
            )
        return input_mask, recurrent_mask

    def _recurrence(self, x, weights, initial_state, batch_norm, statistics,
                    dropout_masks, return_sequences, synchronized=None,
                    differentiated=None):
        """The recurrence over steps in processing order.

        Args:
            x: `(batch, timesteps, features)`, compute dtype.
            weights: `(batch, timesteps, 1)` 0/1 weights, or `None`.
            initial_state: `(h0, c0, offset)`.
            batch_norm: normalize with batch moments (else population
                statistics).
            statistics: the population statistics to use, as
                `{(part, stat): value}`, or `None` for the layer's.
            dropout_masks: `(input_mask, recurrent_mask)`.
            return_sequences: whether to keep every step's output.
            synchronized: whether batch moments span the replicas; default
                the cell's setting.
            differentiated: whether a gradient may be taken; default
                `batch_norm`. Batch moments without a gradient, where
                `_on_xla` allows, come from a compiled loop that computes
                nothing else (and returns no state).

        Returns:
            `(final, outputs, moments)`: the final `(h, c)`, the
            `(batch, timesteps, units)` outputs or `None`, and with
            `batch_norm` the `(steps, counts, batch_stats)` of
            `_update_statistics`, else `None`.
        """
        cell = self.cell
        if synchronized is None:
            synchronized = cell.synchronized
        h0, c0, offset = initial_state
        input_mask, recurrent_mask = dropout_masks
        if input_mask is not None:
            x = x * input_mask[:, None, :]
        length = ops.shape(x)[1]
        steps = offset + ops.arange(length, dtype="int32")
        if batch_norm:
            x_moments = cell.input_moments(x, weights, synchronized)
            norm = cell.batch_normalization(x_moments)
        else:
            norm = cell.population_normalization(
                ops.clip(steps, 0, cell.max_timesteps - 1), statistics
            )
        xs = {"x": _time_major(x), "norm": _packed(norm)}
        if weights is not None:
            xs["weights"] = _time_major(weights)
        if differentiated is None:
            differentiated = batch_norm

        def step_by_step():
            step = self._step(norm, recurrent_mask, return_sequences,
                              batch_norm, synchronized)
            y_dtypes = ((self.compute_dtype,) if return_sequences else ()) + (
                ("float32",) if batch_norm else ()
            )
            unroll = self._unrolled(x, batch_norm and synchronized)
            return _loop.scan(step, (h0, c0), xs, y_dtypes, unroll,
                              differentiated=differentiated)

        final, history = self._xla_loop(
            xs, (h0, c0), recurrent_mask, return_sequences, batch_norm,
            differentiated, step_by_step,
        )
        outputs = _time_major(history[0]) if return_sequences else None
        if not batch_norm:
            return final, outputs, None
        if weights is None:
            batch_size = ops.cast(ops.shape(x)[0], "float32")
            counts = ops.ones((length,), dtype="float32") * batch_size
        else:
            counts = ops.sum(ops.cast(weights, "float32"), axis=(0, 2))
        if synchronized:
            counts = _replicas.replica_sum(counts)
        moments = (steps, counts, cell.batch_statistics(x_moments,
                                                        history[-1]))
        return final, outputs, moments

    def _step(self, norm, recurrent_mask, return_sequences, batch_norm,
              synchronized):
        """The loop's step: `(carry, inputs) -> (carry, outputs)`."""
        # One tensor read per step rather than several: each read costs
        # the loop ops, and more when it needs a gradient.
        norm_keys = list(norm)
        norm_ends = list(
            itertools.accumulate(norm[k].shape[-1] for k in norm_keys)
        )
        recurrence = self.cell.recurrence(synchronized)

        def step(carry, inputs):
            h_prev, c_prev = carry[0], carry[1]
            if recurrent_mask is not None:
                h_prev = h_prev * recurrent_mask
            norm = dict(
                zip(norm_keys, ops.split(inputs["norm"], norm_ends[:-1], -1))
            )
            h, c, moments = recurrence(
                inputs["x"], h_prev, c_prev, norm, inputs.get("weights")
            )
            if "weights" in inputs:
                keep = inputs["weights"] > 0
                h = ops.where(keep, h, carry[0])
                c = ops.where(keep, c, c_prev)
            # The outputs are stored only when returned: the last one is the
            # final state.
            ys = (h,) if return_sequences else ()
            return (h, c), ys + ((moments,) if batch_norm else ())

        return step

    def _unrolled(self, x, synchronized):
        """Whether the time loop is a Python loop. tf.distribute cannot
        all-reduce inside a tf.while_loop (its merge_call refuses control
        flow), so synchronized statistics across replicas need the loop
        unrolled."""
        unroll = self.unroll or (
            synchronized and _replicas.replicas_in_sync() > 1
        )
        if unroll and x.shape[1] is None:
            raise ValueError(
                "A BNLSTM with synchronized=True needs inputs of a known "
                "length under a tf.distribute strategy, because the time "
                "loop is unrolled there; received input shape "
                f"{tuple(x.shape)}"
            )
        return unroll

    def _outputs(self, final, outputs, alignment):
        """`(last_output, outputs, final)` in Keras' order and masking
        conventions: a masked position repeats the output before it, zero
        before the first real step (or always, with
        `zero_output_for_mask`)."""
        last_output = final[0]
        if alignment is None:
            if self.return_sequences:
                last_output = outputs[:, -1]
            return last_output, outputs, final
        if self.return_sequences:
            outputs = alignment.scatter(outputs)
            if self.zero_output_for_mask:
                outputs = outputs * alignment.mask
            return outputs[:, -1], outputs, final
        last_output = last_output * alignment.any_real
        if self.zero_output_for_mask:
            last_output = last_output * alignment.mask[:, -1]
        return last_output, None, final

    def _dropout_mask(self, shape, rate=None):
        rate = self.dropout if rate is None else rate
        ones = ops.ones(shape, dtype=self.compute_dtype)
        return keras.random.dropout(ones, rate, seed=self.seed_generator)


def warn_if_one_sequence(x):
    """Warns when a training batch holds one sequence (where its size is
    known when the step is traced): its batch moments are its own values,
    so every normalized term is `beta` (0 for `x W` and `h U`) whatever
    the input, and the layer learns nothing from it. Not an error: the
    last batch of an epoch may hold one sequence."""
    if x.shape[0] == 1:
        warnings.warn(
            "A BNLSTM trains on a batch of one sequence: batch "
            "normalization over one sequence normalizes every term to "
            "zero, so the layer learns nothing from it. Train with "
            "batches of several sequences (batch_size >= 8, say); for "
            "one-step-at-a-time forecasting, train a stateless model and "
            "copy its weights into a stateful twin with set_weights().",
            stacklevel=2,
        )


def _time_major(t):
    return ops.moveaxis(t, 1, 0)


def _packed(norm):
    """The per-step normalization inputs as one tensor (see `_step`)."""
    return ops.concatenate(list(norm.values()), axis=-1)


class _Alignment:
    """Each sequence's real (unmasked) steps moved to the front, in order.

    The t-th real step of every sequence then sits at step t and is
    normalized with statistics row t, whatever padding came before it, in
    front, behind or between: a sequence gives the same outputs padded or
    not, and in training the moments of row t pool the t-th real step of
    every sequence that has one. Keras' cuDNN path aligns a backward
    sequence the same way (`tf.reverse_sequence` by length). Masked steps
    keep the state as they always did, so the state is unchanged by the
    move; only the statistics row a step uses is.

    Args:
        mask: `(batch, timesteps)` boolean mask, steps in processing order.
        dtype: the dtype of the weights.
    """

    def __init__(self, mask, dtype):
        real = ops.cast(mask, "int32")
        # Real steps up to and including each position.
        self.real_before = ops.cumsum(real, axis=1)
        length = self.real_before[:, -1:]
        padding_before = ops.cumsum(1 - real, axis=1)
        destination = ops.where(
            mask, self.real_before - 1, length + padding_before - 1
        )
        # The keys are distinct, so any sort gives the one inverse.
        self.source = ops.argsort(destination, axis=1)
        positions = ops.arange(ops.shape(real)[1], dtype="int32")[None]
        self.weights = ops.cast(positions < length, dtype)[..., None]
        self.mask = ops.cast(mask, dtype)[..., None]
        self.any_real = ops.cast(length > 0, dtype)

    def gather(self, x):
        """`x` with each sequence's real steps first."""
        return ops.take_along_axis(x, self.source[..., None], axis=1)

    def scatter(self, outputs):
        """Outputs of aligned steps back at their positions: each position
        gets the output of the last real step at or before it, or zeros
        before the first."""
        padded = ops.pad(outputs, [[0, 0], [1, 0], [0, 0]])
        return ops.take_along_axis(
            padded, self.real_before[..., None], axis=1
        )

