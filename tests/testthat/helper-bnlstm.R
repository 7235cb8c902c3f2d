# bnlstm carries pybnlstm itself; the Python it runs in needs Keras.
skip_if_no_bnlstm <- function() {
  if (!reticulate::py_module_available("keras")) {
    skip("the Python package keras is not available")
  }
}

keras <- function() reticulate::import("keras")

random_array <- function(...) {
  dims <- c(...)
  array(stats::runif(prod(dims)), dims)
}
