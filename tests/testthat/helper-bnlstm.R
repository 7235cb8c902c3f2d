skip_if_no_bnlstm <- function() {
  if (!reticulate::py_module_available("pybnlstm")) {
    skip("the Python package pybnlstm is not available")
  }
}

keras <- function() reticulate::import("keras")

random_array <- function(...) {
  dims <- c(...)
  array(stats::runif(prod(dims)), dims)
}
