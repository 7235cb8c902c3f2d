# The Python side. bnlstm carries its own copy of the Python module
# (inst/python/pybnlstm, copied from the repository's pybnlstm/ when the
# package is installed), so the two always match, and imports it lazily
# (delay_load): loading bnlstm never starts Python.

.bnlstm <- new.env(parent = emptyenv())

.onLoad <- function(libname, pkgname) {
  declare_python_requirements()
  path <- pybnlstm_path()
  # When Python already runs (keras3 loaded first, or R embedded in Python),
  # import_from_path() does not delay, and runs none of the hooks; a
  # failure then waits for first use.
  if (reticulate::py_available(initialize = FALSE)) {
    warn_other_pybnlstm(path)
  }
  .bnlstm$module <- tryCatch(
    reticulate::import_from_path("pybnlstm", path, delay_load = list(
      before_load = function() warn_other_pybnlstm(path),
      on_load = function() check_versions(),
      on_error = function(e) stop_missing_python(e)
    )),
    error = function(e) NULL
  )
  .bnlstm$keras <- reticulate::import("keras", delay_load = TRUE)
  # A model saved with the layer loads in a fresh session, where keras3's
  # load_model() imports keras but nothing imports bnlstm's module: when
  # Python first imports keras, pybnlstm is imported too, which registers
  # the layer. reticulate runs hooks of this name after each import. A
  # plain import, not the delayed module: keras may be imported while
  # that one loads.
  setHook("reticulate::keras::load", function() {
    reticulate::import_from_path("pybnlstm", path)
    invisible(NULL)
  })
}

# Where pybnlstm is imported from: the copy bnlstm carries, unless the
# option bnlstm.python_path names a folder that holds another (a
# development checkout, for example), set before library(bnlstm).
pybnlstm_path <- function() {
  path <- getOption("bnlstm.python_path",
                    system.file("python", package = "bnlstm"))
  if (!is.character(path) || length(path) != 1 || is.na(path) ||
      !file.exists(file.path(path, "pybnlstm", "__init__.py"))) {
    stop("The option bnlstm.python_path must name a folder that holds the ",
         "Python package pybnlstm (pybnlstm/__init__.py); got ",
         paste(format(path), collapse = ", "), ".", call. = FALSE)
  }
  normalizePath(path)
}

# On reticulate 1.41 and later, a package declares the Python packages it
# needs, and reticulate provides them (keras3 does the same for keras and
# TensorFlow). Older reticulate has no py_require(): nothing to declare.
declare_python_requirements <- function() {
  if (utils::packageVersion("reticulate") < "1.41") {
    return(invisible(FALSE))
  }
  packages <- python_requirements()
  py_require <- getExportedValue("reticulate", "py_require")
  tryCatch(py_require(packages), error = function(e) {
    warning("bnlstm could not declare its Python requirements (",
            paste(packages, collapse = ", "), "): ", conditionMessage(e),
            call. = FALSE)
  })
  invisible(TRUE)
}

# The Python packages bnlstm needs, as configure derived them from
# pybnlstm's pyproject.toml: its dependencies, pandas for the forecasting
# helpers, and TensorFlow unless KERAS_BACKEND names another backend.
python_requirements <- function() {
  packages <- readLines(system.file("python", "requirements.txt",
                                    package = "bnlstm", mustWork = TRUE))
  if (Sys.getenv("KERAS_BACKEND", "tensorflow") != "tensorflow") {
    packages <- packages[!grepl("^tensorflow\\b", packages)]
  }
  packages
}

# A pybnlstm imported before bnlstm's own (by Python code in the same
# session) is the one every later import gets.
warn_other_pybnlstm <- function(path) {
  modules <- reticulate::import("sys", convert = FALSE)$modules
  if (!reticulate::py_to_r(modules$`__contains__`("pybnlstm"))) {
    return(invisible(FALSE))
  }
  other <- reticulate::py_to_r(modules$`__getitem__`("pybnlstm")$`__file__`)
  mine <- file.path(path, "pybnlstm", "__init__.py")
  if (normalizePath(other) != normalizePath(mine)) {
    warning("A pybnlstm is already imported in this Python session from ",
            dirname(other), "; bnlstm uses it, not its own copy in ",
            dirname(mine), ".", call. = FALSE)
  }
  invisible(TRUE)
}

# The pybnlstm module, imported and version-checked on first use.
bnlstm_python <- function() {
  if (is.null(.bnlstm$module)) {
    path <- pybnlstm_path()
    warn_other_pybnlstm(path)
    .bnlstm$module <- tryCatch(
      reticulate::import_from_path("pybnlstm", path),
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

# Warns once when the R and Python packages differ in version: possible
# only when another pybnlstm than bnlstm's own is in use.
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
      "pybnlstm in use is version ", python_version, ".",
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
    c("keras", "numpy", "pandas")
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
