# The Python side. Imported lazily (delay_load): loading bnlstm never
# starts Python, and a missing Python package is reported on first use.

.bnlstm <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  # When Python already runs (keras3 loaded first, or R embedded in Python),
  # import() does not delay; a failure then waits for first use too.
  .bnlstm$module <- tryCatch(
    reticulate::import("pybnlstm", delay_load = list(
      on_load = function() check_versions(),
      on_error = function(e) stop_missing_python(e)
    )),
    error = function(e) NULL
  )
  .bnlstm$keras <- reticulate::import("keras", delay_load = TRUE)
}

# The pybnlstm module, imported and version-checked on first use.
bnlstm_python <- function() {
  if (is.null(.bnlstm$module)) {
    .bnlstm$module <- tryCatch(
      reticulate::import("pybnlstm"),
      error = function(e) stop_missing_python(e)
    )
  }
  module <- .bnlstm$module
  if (is.null(.bnlstm$checked)) {
    # Touching an attribute loads a delayed module (and runs on_load).
    reticulate::py_get_attr(module, "__version__")
    check_versions()
  }
  module
}

keras_python <- function() {
  bnlstm_python()
  .bnlstm$keras
}

# Warns once when the R and Python packages differ in version.
check_versions <- function(python_version = NULL) {
  if (!is.null(.bnlstm$checked)) {
    return(invisible(TRUE))
  }
  .bnlstm$checked <- TRUE
  if (is.null(python_version)) {
    python_version <- reticulate::py_to_r(
      reticulate::py_get_attr(.bnlstm$module, "__version__")
    )
  }
  r_version <- as.character(utils::packageVersion("bnlstm"))
  if (!identical(python_version, r_version)) {
    warning(
      "bnlstm (R) is version ", r_version, " but the Python package ",
      "pybnlstm is version ", python_version, ". Install matching ",
      "versions, for example with install_bnlstm().",
      call. = FALSE
    )
  }
  invisible(TRUE)
}

stop_missing_python <- function(error) {
  python <- tryCatch(
    reticulate::py_config()$python,
    error = function(e) "(no Python found)"
  )
  missing <- Filter(
    function(module) {
      !isTRUE(tryCatch(reticulate::py_module_available(module),
                       error = function(e) FALSE))
    },
    c("keras", "pybnlstm")
  )
  what <- if (length(missing)) {
    paste0("The Python package(s) ", paste(missing, collapse = ", "),
           " cannot be found")
  } else {
    "The Python package pybnlstm failed to load"
  }
  stop(
    what, " in the Python that reticulate uses (", python, "): ",
    conditionMessage(error), "\nInstall them with install_bnlstm(), or ",
    "point reticulate at a Python that has them with the environment ",
    "variable RETICULATE_PYTHON.",
    call. = FALSE
  )
}
