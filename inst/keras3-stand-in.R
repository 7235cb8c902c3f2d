# A stand-in for the few keras3 verbs that bnlstm's vignettes use, for
# machines where keras3 cannot be installed: keras3 needs reticulate 1.42 or
# later, and this project's CI has Debian's 1.28 and no CRAN. The vignettes
# source it only when keras3 is absent, so that their keras3 code runs as
# written there too; with keras3 installed they run keras3 itself. It is not
# part of bnlstm's interface: use keras3.
#
# Each verb does what keras3's does for the arguments the vignettes give:
# data go to Python as float32 NumPy arrays, other whole numbers as
# integers, a validation list as a tuple of arrays, and fit() returns the
# per-epoch metrics as keras3's history does.

keras <- reticulate::import("keras")

as_data <- function(value) {
  if (is.list(value)) {
    return(do.call(reticulate::tuple, lapply(value, as_data)))
  }
  reticulate::np_array(value, dtype = "float32")
}

as_python_arguments <- function(arguments) {
  lapply(arguments, function(value) {
    if (is.numeric(value) && length(value) == 1 && !is.na(value) &&
        value == round(value) && abs(value) < .Machine$integer.max) {
      as.integer(value)
    } else if (is.list(value) && is.null(names(value))) {
      as_data(value)
    } else {
      value
    }
  })
}

add_layer <- function(object, layer) {
  if (is.null(object)) {
    return(layer)
  }
  object$add(layer)
  invisible(object)
}

keras_model_sequential <- function(input_shape = NULL) {
  model <- keras$Sequential()
  if (!is.null(input_shape)) {
    shape <- lapply(input_shape, function(d) if (is.na(d)) NULL else as.integer(d))
    model$add(keras$Input(shape = do.call(reticulate::tuple, shape)))
  }
  model
}

layer_dense <- function(object = NULL, units, ...) {
  add_layer(object, do.call(keras$layers$Dense,
                            as_python_arguments(list(units = units, ...))))
}

layer_lstm <- function(object = NULL, units, ...) {
  add_layer(object, do.call(keras$layers$LSTM,
                            as_python_arguments(list(units = units, ...))))
}

layer_masking <- function(object = NULL, mask_value = 0) {
  add_layer(object, keras$layers$Masking(mask_value = mask_value))
}

bidirectional <- function(object = NULL, layer, ...) {
  add_layer(object, keras$layers$Bidirectional(layer, ...))
}

compile <- function(object, ...) {
  object$compile(...)
  invisible(object)
}

fit <- function(object, x, y, ...) {
  history <- do.call(object$fit, c(list(as_data(x), as_data(y)),
                                    as_python_arguments(list(...))))
  metrics <- lapply(history$history, unlist)
  structure(list(params = history$params,
                 metrics = metrics),
            class = "keras_training_history")
}

predict <- function(object, x, ...) {
  if (!inherits(object, "keras.src.models.model.Model")) {
    return(stats::predict(object, x, ...))
  }
  do.call(object$predict, c(list(as_data(x)), as_python_arguments(list(...))))
}

count_params <- function(object) {
  object$count_params()
}

save_model <- function(model, filepath) {
  model$save(filepath)
  invisible(model)
}

load_model <- function(model) {
  keras$saving$load_model(model)
}
