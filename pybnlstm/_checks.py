"""Argument validation shared by the cell and the layer.

Messages follow Keras' own wording: name the argument, say what was expected,
show what was received.
"""

import numbers


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
