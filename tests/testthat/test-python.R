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
