"""Argument validation, for every argument of the package's Python side
(the R side checks in R/checks.R, before Python starts).

Messages follow Keras' own wording: name the argument, say what was expected,
show what was received.
"""

import numbers

import keras


def positive_int(name, value, allow_none=False):
    return _whole_number(name, value, 1, "positive", allow_none)


def non_negative_int(name, value):
    return _whole_number(name, value, 0, "non-negative")


def _whole_number(name, value, minimum, words, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"{words} integer, got {value!r} of type {type(value).__name__}"
        )
    if value < minimum:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"{words} integer, got {value}"
        )
    return int(value)


def fraction(name, value, upper_inclusive):
    """A real number in [0, 1) or [0, 1]."""
    upper = "1]" if upper_inclusive else "1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"number in [0, {upper}, got {value!r} of type "
            f"{type(value).__name__}"
        )
    too_high = value > 1 if upper_inclusive else value >= 1
    if not value >= 0 or too_high:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"number in [0, {upper}, got {value}"
        )
    return float(value)


def positive_real(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive number, got {value!r} of type {type(value).__name__}"
        )
    if not value > 0:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected a "
            f"positive number, got {value}"
        )
    return float(value)


def choice(name, value, choices):
    if value not in choices:
        raise ValueError(
            f"Received an invalid value for argument `{name}`, expected one "
            f"of {', '.join(repr(c) for c in choices)}, got {value!r}"
        )
    return value


def seed(name, value):
    """An integer seed, or None."""
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise TypeError(
            f"Received an invalid value for argument `{name}`, expected an "
            f"integer or None, got {value!r}"
        )
    return value


def auto_flag(name, value):
    """'auto', True or False."""
    if not (value == "auto" or isinstance(value, bool)):
        raise ValueError(
            f"Received an invalid value for argument `{name}`, "
            f"expected 'auto', True or False, got {value!r}"
        )
    return value


def synchronized(value):
    """The `synchronized` argument, as a bool; True only on TensorFlow,
    whose replica context a layer can reach from inside its call."""
    if not isinstance(value, bool):
        raise TypeError(
            "Received an invalid value for argument `synchronized`, expected "
            f"True or False, got {value!r} of type {type(value).__name__}"
        )
    backend = keras.backend.backend()
    if value and backend != "tensorflow":
        raise ValueError(
            "Received synchronized=True on the "
            f"{backend} backend: synchronized batch statistics need a "
            "tf.distribute strategy and are only supported with the "
            "TensorFlow backend. On JAX, keras.distribution.DataParallel "
            "computes the statistics over the global batch already; use "
            "synchronized=False there."
        )
    return value
