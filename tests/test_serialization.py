"""Config round trips and `.keras` files across processes."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
from conftest import assert_close, assert_equal, built_layer

import pybnlstm

NON_DEFAULT = dict(
    units=3,
    activation="relu",
    recurrent_activation="hard_sigmoid",
    use_bias=True,
    kernel_initializer="he_normal",
    recurrent_initializer=keras.initializers.Orthogonal(gain=0.5),
    unit_forget_bias=False,
    gamma_initializer=0.25,
    beta_initializer="ones",
    kernel_regularizer=keras.regularizers.L2(0.01),
    recurrent_constraint="non_neg",
    activity_regularizer="l1",
    dropout=0.1,
    recurrent_dropout=0.2,
    seed=5,
    max_timesteps=9,
    momentum=0.9,
    epsilon=1e-4,
    return_sequences=True,
    return_state=True,
    go_backwards=True,
    unroll=True,
    use_xla=False,
    use_cudnn=False,
    implementation=1,
    input_statistics="sequence",
    statistics_sample=17,
)


def test_registered_names():
    assert keras.saving.get_registered_name(pybnlstm.BNLSTM) == \
        "pybnlstm>BNLSTM"
    assert keras.saving.get_registered_name(pybnlstm.BNLSTMCell) == \
        "pybnlstm>BNLSTMCell"


def test_layer_config_round_trip():
    layer = pybnlstm.BNLSTM(**NON_DEFAULT)
    config = layer.get_config()
    clone = pybnlstm.BNLSTM.from_config(config)
    assert clone.get_config() == config
    assert json.loads(json.dumps(config)) == config
    for key in ("units", "dropout", "recurrent_dropout", "seed",
                "max_timesteps", "momentum", "epsilon", "go_backwards",
                "unroll", "return_state", "use_bias", "unit_forget_bias",
                "use_xla", "use_cudnn", "implementation", "input_statistics",
                "statistics_sample"):
        assert getattr(clone, key) == NON_DEFAULT[key], key
    assert clone.activation is keras.activations.relu
    assert_close(
        clone.gamma_initializer((2,)), [0.25, 0.25])
    assert clone.recurrent_initializer.gain == 0.5
    assert clone.kernel_regularizer.l2 == 0.01


def test_cell_config_round_trip():
    cell = pybnlstm.BNLSTMCell(3, max_timesteps=4, momentum=0.5,
                               gamma_initializer="ones")
    config = cell.get_config()
    assert pybnlstm.BNLSTMCell.from_config(config).get_config() == config


def test_serialize_deserialize_builds_same_output(rng):
    layer = built_layer(return_sequences=True)
    x = rng.normal(size=(6, 5, 3)).astype("float32")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert type(clone) is pybnlstm.BNLSTM
    clone.build((6, 5, 3))
    clone.set_weights(layer.get_weights())
    assert_equal(clone(x), layer(x))


LOAD_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    import pybnlstm
    model = keras.saving.load_model(sys.argv[1])
    x = np.load(sys.argv[2])
    layer = [l for l in model.layers if isinstance(l, pybnlstm.BNLSTM)][0]
    np.savez(sys.argv[3], prediction=model.predict(x, verbose=0),
             **{w.name: w.numpy() for w in layer.weights})
    assert not np.any(layer.reference_sample.sequences.numpy())
""")


def saved_arrays(path):
    """Every array stored in a `.keras` file's weights, by path."""
    import h5py
    import zipfile

    with zipfile.ZipFile(path) as archive:
        archive.extract("model.weights.h5", path.parent)
    arrays = {}
    with h5py.File(path.parent / "model.weights.h5") as weights:
        weights.visititems(lambda name, item: arrays.update(
            {name: item[()]}) if isinstance(item, h5py.Dataset) else None)
    return arrays


def test_keras_file_loads_in_another_process(rng, tmp_path):
    x = rng.normal(size=(12, 5, 3)).astype("float32")
    model = keras.Sequential([
        keras.Input((5, 3)),
        pybnlstm.BNLSTM(6, return_sequences=True, dropout=0.1),
        pybnlstm.BNLSTM(4, gamma_initializer=0.2),
        keras.layers.Dense(1),
    ])
    model.compile("adam", "mse")
    y = rng.normal(size=(12, 1))
    model.fit(x, y, epochs=2, batch_size=5, verbose=0)
    layer = model.layers[0]
    path, data, out = (tmp_path / "m.keras", tmp_path / "x.npy",
                       tmp_path / "out.npz")
    # fit() ends with the statistics re-estimated (its optimizer reads the
    # weights); a step after it leaves them stale.
    assert not layer.statistics_stale
    model.train_on_batch(x[:5], y[:5])
    assert layer.statistics_stale
    # Saving re-estimates the statistics first, as a prediction would.
    model.save(path)
    assert not layer.statistics_stale
    np.save(data, x)
    subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(path), str(data),
                    str(out)], check=True)
    loaded = np.load(out)
    assert_equal(loaded["prediction"],
                                  model.predict(x, verbose=0))
    for w in layer.cell.weights:
        assert_equal(loaded[w.name], w.numpy())
    assert np.any(layer.cell.moving_variance_h.numpy() != 1.0)
    # The update counts travel too (2 epochs of 3 batches and one more).
    assert_equal(loaded["moving_count"], [7.0] * 5)
    # The file holds no training data: the reference sample stays behind,
    # and the loaded layer's is empty.
    stored = saved_arrays(path)
    sequences = tuple(layer.reference_sample.sequences.shape)
    assert not any(a.shape == sequences for a in stored.values())
    layer_arrays = [a for name, a in stored.items()
                    if name.startswith("layers/")]
    assert sum(a.size for a in layer_arrays) == sum(
        int(np.prod(w.shape)) for w in model.weights)
    assert "reference_sequences" not in loaded
