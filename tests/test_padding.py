"""Padding never changes a prediction: with a mask, the t-th real step of
each sequence uses statistics row t, wherever the padding is."""

import keras
import numpy as np
import pytest
from conftest import TOL, assert_close, built_layer, to_np
from reference import reference_for, weights_of

import pybnlstm

LENGTHS = (5, 2, 4, 1, 3, 5)


def sequences(rng, lengths=LENGTHS, features=3):
    return [rng.normal(size=(n, features)).astype("float32")
            for n in lengths]


def padded(seqs, length, where):
    """`(x, mask)`: each sequence padded to `length` with zeros, in front
    (`"pre"`, `pad_sequences()`'s default), behind (`"post"`), or one way
    and the other in turn (`"mixed"`)."""
    x = np.zeros((len(seqs), length, seqs[0].shape[-1]), "float32")
    mask = np.zeros((len(seqs), length), bool)
    for i, s in enumerate(seqs):
        front = where == "pre" or (where == "mixed" and i % 2 == 0)
        start = length - len(s) if front else 0
        x[i, start:start + len(s)] = s
        mask[i, start:start + len(s)] = True
    return x, mask


def alone(layer, seqs, **kwargs):
    """Each sequence run by itself, unpadded and without a mask."""
    return [to_np(layer(s[None], **kwargs)) for s in seqs]


def real_steps(outputs, mask):
    """The outputs at each sequence's real positions."""
    return [out[m] for out, m in zip(to_np(outputs), mask)]


@pytest.mark.parametrize("where", ["pre", "post", "mixed"])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_inference_output_does_not_depend_on_padding(rng, where,
                                                      go_backwards):
    layer = built_layer(input_shape=(6, 7, 3), return_sequences=True,
                        go_backwards=go_backwards)
    seqs = sequences(rng)
    x, mask = padded(seqs, 7, where)
    outputs = layer(x, mask=mask)
    if go_backwards:
        # Keras returns a backward sequence in processing order.
        outputs = to_np(outputs)[:, ::-1]
    for got, want in zip(real_steps(outputs, mask), alone(layer, seqs)):
        want = want[0, ::-1] if go_backwards else want[0]
        assert_close(got, want, **TOL)


@pytest.mark.parametrize("where", ["pre", "post", "mixed"])
def test_last_output_does_not_depend_on_padding(rng, where):
    layer = built_layer(input_shape=(6, 7, 3))
    seqs = sequences(rng)
    x, mask = padded(seqs, 7, where)
    want = np.concatenate(alone(layer, seqs))
    assert_close(layer(x, mask=mask), want, **TOL)
    # ... nor on the batch: each sequence alone, padded.
    for i in range(len(seqs)):
        assert_close(layer(x[i:i + 1], mask=mask[i:i + 1]), want[i:i + 1],
                     **TOL)


def test_holes_are_skipped_as_if_absent(rng):
    """A mask that is not one run: the t-th unmasked step uses row t."""
    layer = built_layer(input_shape=(6, 7, 3), return_sequences=True)
    x = rng.normal(size=(2, 7, 3)).astype("float32")
    mask = np.array([[1, 0, 1, 1, 0, 0, 1], [0, 1, 1, 0, 1, 1, 0]], bool)
    outputs = to_np(layer(x, mask=mask))
    for i in range(2):
        want = to_np(layer(x[i:i + 1, mask[i]]))[0]
        assert_close(outputs[i, mask[i]], want, **TOL)
        # A masked position repeats the output before it; zeros before
        # the first real step.
        first = np.argmax(mask[i])
        assert not outputs[i, :first].any()
        for p in range(first + 1, 7):
            if not mask[i, p]:
                assert_close(outputs[i, p], outputs[i, p - 1], atol=0)


@pytest.mark.parametrize("where", ["pre", "post", "mixed"])
def test_training_batch_moments_pool_each_sequences_own_steps(rng, where):
    """A padded batch trains as the same batch unpadded would: the same
    outputs, and statistics row t pools the t-th real step of every
    sequence that has one."""
    seqs = sequences(rng, lengths=(4, 4, 4, 4))
    x, mask = padded(seqs, 8, where)
    unpadded = np.stack(seqs)
    layer = built_layer(input_shape=(4, 8, 3), return_sequences=True,
                        statistics_sample=0)
    twin = built_layer(input_shape=(4, 8, 3), return_sequences=True,
                       statistics_sample=0)
    for a in (layer, twin):
        a.cell.moving_count.assign(np.zeros(8))
    got = layer(x, mask=mask, training=True)
    want = twin(unpadded, training=True)
    assert_close(np.stack(real_steps(got, mask)), want, **TOL)
    padded_stats, plain_stats = weights_of(layer), weights_of(twin)
    for key, value in plain_stats.items():
        assert_close(padded_stats[key], value, **TOL)
    assert padded_stats["moving_count"].tolist() == [1] * 4 + [0] * 4


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_mixed_lengths_match_reference(rng, training, go_backwards):
    layer = built_layer(input_shape=(6, 7, 3), return_sequences=True,
                        return_state=True, go_backwards=go_backwards)
    x, mask = padded(sequences(rng), 7, "mixed")
    x[3, 2] = 0.0
    mask[0, 2] = False  # a hole as well
    ref = reference_for(layer)
    got = layer(x, mask=mask, training=training)
    want = ref.run(x, mask=mask, training=training,
                   go_backwards=go_backwards)
    for a, b in zip(got, want):
        assert_close(a, b, **TOL)
    if training:
        for key, value in weights_of(layer).items():
            assert_close(value, ref.w[key], **TOL)


def identity_normalization(layer):
    """Statistics and gammas that make every normalization the identity
    in inference: the layer is then Keras' LSTM."""
    cell = layer.cell
    for part in "xhc":
        getattr(cell, f"moving_mean_{part}").assign(
            np.zeros(getattr(cell, f"moving_mean_{part}").shape))
        getattr(cell, f"moving_variance_{part}").assign(
            np.full(getattr(cell, f"moving_variance_{part}").shape,
                    1.0 - cell.epsilon))
    for gamma in (cell.gamma_x, cell.gamma_h, cell.gamma_c):
        gamma.assign(np.ones(gamma.shape))
    cell.beta_c.assign(np.zeros(cell.beta_c.shape))


@pytest.mark.parametrize("go_backwards", [False, True])
@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("zero_output_for_mask", [False, True])
def test_masked_outputs_follow_keras_lstm(rng, go_backwards, return_sequences,
                                          zero_output_for_mask):
    kwargs = dict(go_backwards=go_backwards,
                  return_sequences=return_sequences,
                  zero_output_for_mask=zero_output_for_mask)
    x, mask = padded(sequences(rng), 7, "mixed")
    mask[0, 2] = False
    lstm = keras.layers.LSTM(4, **kwargs)
    layer = pybnlstm.BNLSTM(4, **kwargs)
    lstm.build(x.shape)
    layer.build(x.shape)
    pybnlstm.load_lstm_weights(layer, lstm)
    identity_normalization(layer)
    h0 = rng.normal(size=(6, 4)).astype("float32")
    for state in (None, [h0, h0]):
        got = to_np(layer(x, mask=mask, initial_state=state))
        want = to_np(lstm(x, mask=mask, initial_state=state))
        if return_sequences:
            # Before a sequence's first real step, Keras' LSTM outputs
            # zeros on TensorFlow and PyTorch, but on JAX whatever its
            # step made of the padding; here, zeros on every backend.
            processed = mask[:, ::-1] if go_backwards else mask
            started = np.cumsum(processed, axis=1) > 0
            assert not got[~started].any()
            got, want = got[started], want[started]
        assert_close(got, want, **TOL)


def test_bidirectional_does_not_depend_on_padding(rng):
    bi = keras.layers.Bidirectional(
        pybnlstm.BNLSTM(4, return_sequences=True))
    bi.build((None, 7, 3))
    for layer in (bi.forward_layer, bi.backward_layer):
        layer.cell.moving_count.assign(np.ones(7))
        for v in layer.cell.statistics.values():
            v.assign(rng.uniform(0.2, 1.5, v.shape))
    seqs = sequences(rng)
    for where in ("pre", "post"):
        x, mask = padded(seqs, 7, where)
        outputs = bi(x, mask=mask)
        for got, s in zip(real_steps(outputs, mask), seqs):
            assert_close(got, to_np(bi(s[None]))[0], **TOL)


def test_bidirectional_in_a_model_with_masking(rng):
    """pad_sequences() pads in front by default; Masking makes the mask."""
    seqs = sequences(rng)
    x, _ = padded(seqs, 7, "pre")
    inputs = keras.Input((None, 3))
    bi = keras.layers.Bidirectional(pybnlstm.BNLSTM(4, max_timesteps=7))
    dense = keras.layers.Dense(2)
    model = keras.Model(inputs, dense(bi(keras.layers.Masking()(inputs))))
    model.compile("adam", "mse")
    model.fit(x, rng.normal(size=(6, 2)), epochs=2, batch_size=3, verbose=0)
    predicted = model.predict(x, verbose=0)
    for i, s in enumerate(seqs):
        assert_close(predicted[i], model.predict(s[None], verbose=0)[0],
                     **TOL)


@pytest.mark.parametrize("training", [True, False])
def test_sequence_input_statistics_match_reference(rng, training):
    layer = built_layer(input_shape=(6, 7, 3), return_sequences=True,
                        input_statistics="sequence")
    x, mask = padded(sequences(rng), 7, "mixed")
    ref = reference_for(layer)
    assert ref.input_statistics == "sequence"
    got = layer(x, mask=mask, training=training)
    want, _, _ = ref.run(x, mask=mask, training=training)
    assert_close(got, want, **TOL)
    if training:
        for key, value in weights_of(layer).items():
            assert_close(value, ref.w[key], **TOL)


def test_sequence_input_statistics_are_those_of_every_real_step(rng):
    layer = built_layer(input_shape=(6, 7, 3), input_statistics="sequence",
                        statistics_sample=0)
    layer.cell.moving_count.assign(np.zeros(7))
    seqs = sequences(rng)
    x, mask = padded(seqs, 7, "pre")
    layer(x, mask=mask, training=True)
    projected = np.concatenate(seqs).astype("float64") @ weights_of(
        layer)["kernel"]
    assert_close(weights_of(layer)["moving_mean_x"][0],
                 projected.mean(axis=0), **TOL)
    assert_close(weights_of(layer)["moving_variance_x"][0],
                 projected.var(axis=0), **TOL)
