#' Install the Python side of bnlstm
#'
#' Installs the Python package `pybnlstm` (the layer's implementation),
#' with Keras and TensorFlow, into a Python environment that reticulate can
#' use.
#'
#' @param envname Name of (or path to) the virtual environment or conda
#'   environment to install into. Default: `"r-bnlstm"`.
#' @param method Installation method, passed to [reticulate::py_install()].
#' @param package Where pybnlstm comes from: a pip requirement or a path
#'   to a checkout of the bnlstm repository (its root holds
#'   `pyproject.toml`). Default: the pip requirement
#'   `pybnlstm==<the version of this R package>`, so that both sides match.
#' @param extra_packages Further Python packages to install beside it.
#' @param ... Further arguments passed to [reticulate::py_install()].
#'
#' @return The result of [reticulate::py_install()], invisibly.
#' @examples
#' \dontrun{
#' install_bnlstm(package = "~/src/bnlstm")
#' Sys.setenv(RETICULATE_PYTHON = reticulate::virtualenv_python("r-bnlstm"))
#' }
#' @export
install_bnlstm <- function(envname = "r-bnlstm", method = "auto",
                           package = NULL,
                           extra_packages = c("tensorflow", "keras"), ...) {
  if (is.null(package)) {
    package <- paste0("pybnlstm==", utils::packageVersion("bnlstm"))
  }
  check_string(package, "package")
  invisible(reticulate::py_install(
    c(package, extra_packages),
    envname = envname, method = method, pip = TRUE, ...
  ))
}
