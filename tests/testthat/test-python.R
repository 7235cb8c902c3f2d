test_that("the package carries pybnlstm, of its own version", {
  carried <- system.file("python", "pybnlstm", "__init__.py",
                         package = "bnlstm")
  expect_true(nzchar(carried))
  version <- sub('^__version__ = "(.*)"$', "\\1",
                 grep("^__version__ = ", readLines(carried), value = TRUE))
  expect_identical(version, as.character(utils::packageVersion("bnlstm")))
  skip_if_no_bnlstm()
  module <- bnlstm:::bnlstm_python()
  expect_identical(module$`__version__`, version)
  expect_identical(normalizePath(module$`__file__`), normalizePath(carried))
})

test_that("a wrong bnlstm.python_path is named in the error", {
  old <- options(bnlstm.python_path = tempdir())
  on.exit(options(old))
  expect_error(bnlstm:::pybnlstm_path(),
               "bnlstm.python_path must name a folder that holds")
})

test_that("older reticulate gets no py_require() call", {
  skip_if(utils::packageVersion("reticulate") >= "1.41")
  expect_false(bnlstm:::declare_python_requirements())
})

test_that("the Python requirements are pybnlstm's, TensorFlow per backend", {
  packages <- bnlstm:::python_requirements()
  names <- sub("[<>=!~].*", "", packages)
  expect_setequal(names, c("keras", "numpy", "pandas", "tensorflow"))
  old <- Sys.getenv("KERAS_BACKEND", unset = NA)
  on.exit(if (is.na(old)) Sys.unsetenv("KERAS_BACKEND") else
    Sys.setenv(KERAS_BACKEND = old))
  Sys.setenv(KERAS_BACKEND = "jax")
  expect_equal(bnlstm:::python_requirements(),
               packages[names != "tensorflow"])
})
