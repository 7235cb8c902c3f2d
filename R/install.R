#' Install the Python packages bnlstm needs
#'
#' bnlstm carries its own copy of the Python package `pybnlstm` (the
#' layer's implementation) and imports it from there, so the two always
#' match. What it needs from a package index are Keras, TensorFlow, NumPy
#' and pandas, in a Python environment that reticulate can use. With
#' reticulate 1.41 or later, bnlstm declares them when it loads and
#' reticulate provides them on its own; this function is for older
#' reticulate, or for an environment of your choice. It also installs the
#' carried copy of `pybnlstm` there, so that Python code in that
#' environment can import it too.
#'
#' @param envname Name of (or path to) the virtual environment or conda
#'   environment to install into. Default: `"r-bnlstm"`.
#' @param method Installation method, passed to [reticulate::py_install()].
#' @param package Where pybnlstm comes from: `NULL` (the default) for the
#'   copy bnlstm carries, or a pip requirement, or a path to a checkout of
#'   the bnlstm repository (its root holds `pyproject.toml`).
#' @param extra_packages The Python packages installed beside it from the
#'   package index. Default: those pybnlstm requires (Keras, NumPy), with
#'   pandas for the forecasting helpers and TensorFlow (unless
#'   `KERAS_BACKEND` names another backend), as its `pyproject.toml` lists
#'   them.
#' @param ... Further arguments passed to [reticulate::py_install()].
#'
#' @return The result of [reticulate::py_install()], invisibly.
#' @examples
#' \dontrun{
#' install_bnlstm()
#' Sys.setenv(RETICULATE_PYTHON = reticulate::virtualenv_python("r-bnlstm"))
#' }
#' @export
install_bnlstm <- function(envname = "r-bnlstm", method = "auto",
                           package = NULL,
                           extra_packages = python_requirements(), ...) {
  if (is.null(package)) {
    package <- system.file("python", package = "bnlstm")
  }
  check_string(package, "package")
  invisible(reticulate::py_install(
    c(package, extra_packages),
    envname = envname, method = method, pip = TRUE, ...
  ))
}
