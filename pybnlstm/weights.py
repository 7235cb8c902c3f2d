"""Weight transfer from a plain Keras LSTM."""

import keras

from pybnlstm.layer import BNLSTM


def load_lstm_weights(target, source):
    """Loads the weights of a `keras.layers.LSTM` into a `BNLSTM`.

    `kernel`, `recurrent_kernel` and `bias` share `keras.layers.LSTM`'s
    layout (gates in the order i, f, g, o), so they copy as they are. The
    gammas, `beta_c` and the population statistics keep their values.

    Args:
        target: a built `pybnlstm.BNLSTM`.
        source: a built `keras.layers.LSTM`, or the list of its weights
            `[kernel, recurrent_kernel, bias]` (`bias` left out when
            `use_bias=False`) as `get_weights()` returns them.

    Returns:
        `target`.

    Example:

    >>> lstm = keras.layers.LSTM(8)
    >>> _ = lstm(np.zeros((1, 5, 3)))
    >>> bnlstm = pybnlstm.BNLSTM(8)
    >>> _ = bnlstm(np.zeros((1, 5, 3)))
    >>> _ = pybnlstm.load_lstm_weights(bnlstm, lstm)
    """
    if not isinstance(target, BNLSTM):
        raise TypeError(
            "Received an invalid value for argument `target`, expected a "
            f"pybnlstm.BNLSTM, got {type(target).__name__}"
        )
    if not target.built:
        raise ValueError(
            "Received an unbuilt layer for argument `target`; call it on an "
            "input (or build it) before loading weights."
        )
    if isinstance(source, keras.layers.LSTM):
        if not source.built:
            raise ValueError(
                "Received an unbuilt layer for argument `source`; build it "
                "first."
            )
        arrays = source.get_weights()
    else:
        arrays = list(source)
    cell = target.cell
    variables = [cell.kernel, cell.recurrent_kernel]
    if cell.use_bias:
        variables.append(cell.bias)
    if len(arrays) != len(variables):
        raise ValueError(
            f"Received {len(arrays)} arrays for argument `source`, expected "
            f"{len(variables)}: "
            + ", ".join(v.name for v in variables)
        )
    for variable, array in zip(variables, arrays):
        if tuple(array.shape) != tuple(variable.shape):
            raise ValueError(
                f"Received an array of shape {tuple(array.shape)} for "
                f"`{variable.name}`, expected {tuple(variable.shape)}"
            )
    for variable, array in zip(variables, arrays):
        variable.assign(array)
    return target
