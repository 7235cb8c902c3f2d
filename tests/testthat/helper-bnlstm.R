# bnlstm carries pybnlstm itself; the Python it runs in needs Keras.
skip_if_no_bnlstm <- function() {
  if (!reticulate::py_module_available("keras")) {
    skip("the Python package keras is not available")
  }
}

keras <- function() reticulate::import("keras")

# A compiled Sequential regression model: layer_bn_lstm(...), then Dense(1).
regression_model <- function(...) {
  model <- keras()$Sequential() |> layer_bn_lstm(...)
  model$add(keras()$layers$Dense(1L))
  model$compile(optimizer = "adam", loss = "mse")
  model
}

random_array <- function(...) {
  dims <- c(...)
  array(stats::runif(prod(dims)), dims)
}
