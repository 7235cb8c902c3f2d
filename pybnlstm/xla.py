"""The compiled path of a BNLSTM on TensorFlow: whether the recurrence runs
XLA-compiled (`use_xla`), and everything between the layer and the
compiled loops of `_xla_loops`: batches padded to the sizes XLA compiled
for, the traced inference and refresh functions, the loops' arguments.
`BNLSTM` inherits it. TensorFlow is imported only where the path runs, so
that JAX and PyTorch users need not install it."""

import keras
from keras import ops

from pybnlstm import _checks, _loop


class XlaPath:
    """The XLA-compiled recurrence of a `BNLSTM` (see `_on_xla`)."""

    def _checked_xla_setting(self, use_xla, use_cudnn):
        """The one setting `use_xla` from it and `use_cudnn`, Keras' LSTM's
        name for it, which is accepted so that LSTM code runs unchanged;
        an error if `True` where the compiled recurrence does not apply."""
        _checks.auto_flag("use_xla", use_xla)
        _checks.auto_flag("use_cudnn", use_cudnn)
        if "auto" not in (use_xla, use_cudnn) and use_xla != use_cudnn:
            raise ValueError(
                f"Received use_xla={use_xla} and use_cudnn={use_cudnn}; "
                "`use_cudnn` is another name for `use_xla` here, so give "
                "one of them, or the same value to both."
            )
        setting = use_cudnn if use_xla == "auto" else use_xla
        unavailable = self._xla_unavailable()
        if setting is True and unavailable:
            raise ValueError(
                "Received use_xla=True, but the XLA-compiled recurrence "
                f"needs {unavailable}. Use use_xla='auto' or False."
            )
        return setting

    def _traced_inference(self, sequences, initial_state, mask):
        """`_sequence_pass` at inference on the compiled path, through one
        `tf.function` per layer and kind of input, traced once for any
        batch size: each function Keras traces (validation, `predict()`
        and its last partial batch) then holds one call to it instead of
        the pass's few hundred ops, which took a third of a second per
        layer and trace to build, and more to optimize."""
        import tensorflow as tf

        h0, c0, offset = initial_state
        offset = tf.convert_to_tensor(offset, tf.int32)
        arguments = (sequences, h0, c0, offset, mask)
        # Any batch size: the leading axis is left open.
        specs = tuple(None if a is None else tf.TensorSpec(
            (None,) * min(a.shape.rank, 1) + tuple(a.shape[1:]), a.dtype)
            for a in arguments)
        function = self._process.inference_functions.get(specs)
        if function is None:

            def inference(sequences, h0, c0, offset, mask):
                return self._sequence_pass(
                    sequences, (h0, c0, offset), mask, False, False
                )

            function = tf.function(inference, autograph=False)
            function = function.get_concrete_function(*specs)
            self._process.inference_functions[specs] = function
        last_output, outputs, final = function(*arguments)
        rows, length = sequences.shape[:2]
        last_output.set_shape((rows, self.cell.units))
        for state in final:
            state.set_shape((rows, self.cell.units))
        if outputs is not None:
            outputs.set_shape((rows, length, self.cell.units))
        return last_output, outputs, final

    def _refresh_function(self):
        """`_refreshed_statistics`; on the compiled path a `tf.function`
        traced once per layer, so that each traced inference pass (one per
        kind of input, see `_traced_inference`, and step by step under a
        gradient tape) holds one call to it rather than the whole pass
        again: tracing that pass took about a quarter of a second per
        layer and trace."""
        if not self._on_xla():
            return self._refreshed_statistics
        if self._process.traced_refresh is None:
            import tensorflow as tf

            self._process.traced_refresh = tf.function(
                self._refreshed_statistics, autograph=False
            )
        return self._process.traced_refresh

    def _xla_loop(self, xs, state, recurrent_mask, return_sequences,
                  batch_norm, differentiated, step_by_step):
        """`(final, history)` from `_xla_loops`'s compiled loops where they
        apply (see `_on_xla`), else from `step_by_step()`. Inference under a
        gradient tape (a frozen layer in `fit()`) runs step by step:
        TensorFlow cannot differentiate a compiled loop called from an
        uncompiled function."""
        if not self._on_xla():
            return step_by_step()
        if batch_norm and not differentiated:
            # The reference sample keeps its size: nothing to pad.
            return None, (self._xla_statistics(xs, *state),)
        if not batch_norm and _loop.recording():
            return step_by_step()

        batch = ops.shape(xs["x"])[1]
        bucket, quantum = self._batch_bucket(batch, batch_norm)
        padded = _padded_batch(xs, state, recurrent_mask, bucket,
                               weighted=batch_norm)
        if batch_norm:
            final, history = self._xla_training(*padded, return_sequences)
        else:
            final, history = _loop.nonempty(
                xs["x"],
                lambda: self._xla_inference(
                    padded[0], padded[1], return_sequences, quantum
                ),
                step_by_step,
            )
        return _batch_rows(final, history, batch, xs["x"].shape[:2])

    def _batch_bucket(self, batch, training):
        """`(bucket, quantum)`: the batch size the compiled loops run at,
        `batch` padded up to a multiple of `quantum`. In training,
        `quantum` is the layer's first training batch size (`batch` itself
        before any training); inference runs in chunks of `quantum` rows,
        that size or the power of two at or above `batch` if smaller. A
        partial last batch and a validation set reuse the loops XLA
        compiled for the training batches: XLA compiles once per input
        shape, and Keras' `fit()` traces its step for a batch of any size.
        A small inference batch (one row, say) pays for its own power of
        two, not for a training batch of a thousand; that is at most one
        compilation per power of two up to the training batch size."""
        batch = ops.cast(batch, "int32")
        quantum = ops.convert_to_tensor(self.batch_quantum)
        quantum = ops.where(quantum > 0, quantum, batch)
        if training:
            self.batch_quantum.assign(quantum)
        else:
            power = ops.cast(
                2.0 ** ops.ceil(ops.log2(ops.cast(batch, "float32"))), "int32"
            )
            quantum = ops.minimum(quantum, ops.maximum(power, 1))
        return (batch + quantum - 1) // quantum * quantum, quantum

    def _on_xla(self):
        """Whether the recurrence runs XLA-compiled, in `_xla_loops`'s
        loops. Not in an export: the step-by-step loop serves wherever
        TensorFlow runs, TFLite included."""
        return (self.use_xla is not False
                and not self._xla_unavailable() and not _loop.exporting())

    @property
    def use_cudnn(self):
        """`use_xla` under Keras' LSTM's name for it (which `Bidirectional`
        copies from one direction to the other)."""
        return self.use_xla

    @use_cudnn.setter
    def use_cudnn(self, value):
        self.use_xla = value

    def _xla_unavailable(self):
        """What the compiled recurrence needs that this layer lacks, in
        words, or `None`. Synchronized statistics need the step-by-step
        loop, whose all-reduces a compiled loop cannot make."""
        cell = self.cell
        needs = {
            "the TensorFlow backend": keras.backend.backend() == "tensorflow",
            "activation='tanh'": cell.activation is keras.activations.tanh,
            "recurrent_activation='sigmoid'": (
                cell.recurrent_activation is keras.activations.sigmoid
            ),
            "float32 computation": self.compute_dtype == "float32",
            "synchronized=False": not cell.synchronized,
            "unroll=False": not self.unroll,
        }
        missing = [need for need, met in needs.items() if not met]
        return ", ".join(missing) if missing else None

    def _xla_training(self, xs, initial_state, recurrent_mask,
                          return_sequences):
        cell = self.cell
        weights = xs.get("weights")
        run = _loops().training_recurrence(
            cell.units,
            cell.epsilon,
            return_sequences,
            weights is not None,
            recurrent_mask is not None,
        )
        outputs, h, c, moments = run(
            xs["x"],
            xs["norm"],
            *initial_state,
            ops.copy(cell.kernel),
            ops.copy(cell.recurrent_kernel),
            *(ops.copy(v) for v in (cell.gamma_h, cell.gamma_c, cell.beta_c)),
            weights,
            recurrent_mask,
        )
        history = ((outputs,) if return_sequences else ()) + (moments,)
        return (h, c), history

    def _xla_inference(self, xs, initial_state, return_sequences, chunk):
        cell = self.cell
        run = _loops().inference_recurrence(return_sequences,
                                             "weights" in xs)
        outputs, h, c = _loops().in_chunks(
            run, return_sequences, chunk, xs["x"], xs["norm"],
            *initial_state,
            (ops.copy(cell.kernel), ops.copy(cell.recurrent_kernel)),
            xs.get("weights"),
        )
        return (h, c), ((outputs,) if return_sequences else ())

    def _xla_statistics(self, xs, h0, c0):
        cell = self.cell
        run = _loops().statistics_recurrence(cell.epsilon, "weights" in xs)
        return run(
            xs["x"], xs["norm"], h0, c0,
            tuple(ops.copy(v) for v in (
                cell.kernel, cell.recurrent_kernel, cell.gamma_h,
                cell.gamma_c, cell.beta_c)),
            xs.get("weights"),
        )


def _padded_batch(xs, state, recurrent_mask, bucket, weighted):
    """The loop's inputs with zero rows appended up to `bucket` rows. With
    `weighted`, the weights (ones where none were given) mark them 0, so
    that they stay out of the batch moments; a training loop then always
    runs its masked variant, which XLA compiles once for full and partial
    batches alike."""
    batch = ops.shape(xs["x"])[1]
    missing = bucket - batch

    def padded(t, value=0.0):
        at = [[0, 0]] * len(t.shape)
        at[-2] = [0, missing]
        return ops.pad(t, at, constant_values=value)

    xs = dict(xs)
    if weighted and "weights" not in xs:
        xs["weights"] = ops.ones_like(xs["x"][..., :1])
    for key in ("x", "weights"):
        if key in xs:
            xs[key] = padded(xs[key])
    state = tuple(padded(s) for s in state)
    if recurrent_mask is not None:
        recurrent_mask = padded(recurrent_mask, 1.0)
    return xs, state, recurrent_mask


def _batch_rows(final, history, batch, static):
    """`final` and `history` without the rows `_padded_batch` added: the
    time-major outputs lose them, the per-step moments have none. They get
    back the static `(timesteps, batch)` of the inputs, which the loops'
    relaxed trace and the slicing lose: a layer after them may need it
    (an unrolled BNLSTM needs its length), and Keras' LSTM keeps it."""
    timesteps, rows = static
    history = tuple(h[:, :batch] if len(h.shape) == 3 else h
                    for h in history)
    final = tuple(s[:batch] for s in final)
    for s in final:
        s.set_shape((rows, s.shape[-1]))
    for h in history:
        if len(h.shape) == 3:
            h.set_shape((timesteps, rows, h.shape[-1]))
    return final, history



def _loops():
    """`_xla_loops`, imported on first use: it imports TensorFlow."""
    from pybnlstm import _xla_loops

    return _xla_loops
