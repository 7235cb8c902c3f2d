# Argument checks. Each names the argument and says what was expected, and
# runs in R, before anything reaches Python.

stop_argument <- function(name, expected, value) {
  shown <- if (is.null(value)) {
    "NULL"
  } else if (length(value) == 1 && is.atomic(value)) {
    deparse(value)
  } else {
    paste0("an object of class ", class(value)[1], " and length ",
           length(value))
  }
  stop("Received an invalid value for argument `", name, "`: expected ",
       expected, ", got ", shown, ".", call. = FALSE)
}

is_whole_number <- function(value) {
  is.numeric(value) && length(value) == 1 && !is.na(value) &&
    is.finite(value) && value == round(value)
}

check_count <- function(value, name, null_ok = FALSE, zero_ok = FALSE) {
  if (null_ok && is.null(value)) {
    return(NULL)
  }
  if (!is_whole_number(value) || value < (if (zero_ok) 0 else 1)) {
    stop_argument(name, if (zero_ok) "a whole number >= 0" else
      "a positive whole number", value)
  }
  as.integer(value)
}

# One of `choices`; the whole vector (a default left as it is) means the
# first.
check_choice <- function(value, name, choices) {
  if (identical(value, choices)) {
    return(choices[1])
  }
  if (!is.character(value) || length(value) != 1 || !value %in% choices) {
    stop_argument(name, paste0("one of ", paste0("\"", choices, "\"",
                                                 collapse = ", ")), value)
  }
  value
}

check_fraction <- function(value, name, upper_inclusive = FALSE) {
  ok <- is.numeric(value) && length(value) == 1 && !is.na(value) &&
    value >= 0 && (if (upper_inclusive) value <= 1 else value < 1)
  if (!ok) {
    stop_argument(name, paste0("a number in [0, 1", if (upper_inclusive)
      "]" else ")"), value)
  }
  as.numeric(value)
}

check_positive <- function(value, name) {
  if (!is.numeric(value) || length(value) != 1 || is.na(value) ||
      value <= 0) {
    stop_argument(name, "a positive number", value)
  }
  as.numeric(value)
}

check_flag <- function(value, name) {
  if (!is.logical(value) || length(value) != 1 || is.na(value)) {
    stop_argument(name, "TRUE or FALSE", value)
  }
  value
}

check_auto_flag <- function(value, name) {
  if (identical(value, "auto")) {
    return(value)
  }
  if (!is.logical(value) || length(value) != 1 || is.na(value)) {
    stop_argument(name, "\"auto\", TRUE or FALSE", value)
  }
  value
}

check_string <- function(value, name) {
  if (!is.character(value) || length(value) != 1 || is.na(value) ||
      !nzchar(value)) {
    stop_argument(name, "a single non-empty string", value)
  }
  value
}

check_seed <- function(value, name) {
  if (is.null(value)) {
    return(NULL)
  }
  if (!is_whole_number(value)) {
    stop_argument(name, "a whole number or NULL", value)
  }
  as.integer(value)
}

# An input shape without the batch dimension; NA means unknown.
check_shape <- function(value, name) {
  # keras3's shape(10, 3), list(10, 3) and tuples: NULL means unknown.
  if (inherits(value, "python.builtin.object")) {
    value <- reticulate::py_to_r(value)
  }
  if (is.list(value)) {
    scalar <- vapply(value, function(d) {
      is.null(d) || (is.numeric(d) && length(d) == 1)
    }, logical(1))
    if (!all(scalar)) {
      stop_argument(name, paste("a vector of positive whole numbers",
                                "(NA for unknown)"), value)
    }
    value <- vapply(value, function(d) {
      if (is.null(d)) NA_real_ else as.numeric(d)
    }, numeric(1))
  }
  ok <- length(value) >= 1 &&
    (is.numeric(value) || (is.logical(value) && all(is.na(value)))) &&
    all(is.na(value) | (value >= 1 & value == round(value)))
  if (!ok) {
    stop_argument(name, "a vector of positive whole numbers (NA for unknown)",
                  value)
  }
  reticulate::tuple(lapply(value, function(d) {
    if (is.na(d)) NULL else as.integer(d)
  }))
}

# Activations, initializers, regularizers and constraints: a name, or an
# object Keras understands (a number for gamma_initializer).
check_spec <- function(value, name, number_ok = FALSE) {
  # keras3's activations and the like are R functions that carry the name
  # of Keras' own: passed by name, they are saved by name, as keras3's
  # layers save them, and load in any session.
  known <- attr(value, "py_function_name", exact = TRUE)
  if (is.function(value) && is.character(known) && length(known) == 1) {
    return(known)
  }
  if (is.null(value) || inherits(value, "python.builtin.object") ||
      is.function(value)) {
    return(value)
  }
  if (is.character(value)) {
    return(check_string(value, name))
  }
  if (number_ok && is.numeric(value) && length(value) == 1 &&
      !is.na(value)) {
    return(as.numeric(value))
  }
  stop_argument(name, paste0("a name, a Keras object", if (number_ok)
    ", a number" else "", " or NULL"), value)
}
