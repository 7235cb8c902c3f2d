test_that("a model saved in R loads in R, here and in a new process", {
  skip_if_no_bnlstm()
  set.seed(2)
  x <- random_array(12, 5, 3)
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 4, input_shape = c(5, 3), return_sequences = TRUE) |>
    layer_bn_lstm(units = 2)
  model$compile(optimizer = "adam", loss = "mse")
  model$fit(x, random_array(12, 2), epochs = 1L, batch_size = 4L,
            verbose = 0L)
  path <- tempfile(fileext = ".keras")
  model$save(path)
  want <- model$predict(x, verbose = 0L)
  loaded <- keras()$saving$load_model(path)
  expect_identical(loaded$predict(x, verbose = 0L), want)

  data <- tempfile(fileext = ".rds")
  saveRDS(list(x = x, path = path), data)
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(bnlstm)",
    sprintf("d <- readRDS('%s')", data),
    "invisible(bnlstm:::bnlstm_python())  # registers the layer",
    "m <- reticulate::import('keras')$saving$load_model(d$path)",
    sprintf("saveRDS(m$predict(d$x, verbose = 0L), '%s')", data)
  ), script)
  env <- paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))
  status <- system2(file.path(R.home("bin"), "Rscript"), script, env = env,
                    stdout = FALSE, stderr = FALSE)
  expect_equal(status, 0)
  expect_identical(readRDS(data), want)
})
