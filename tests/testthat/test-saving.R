test_that("a model saved in R loads in R, here and in a fresh session", {
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
    "# As keras3's load_model() does: import keras, nothing of bnlstm.",
    "m <- reticulate::import('keras')$saving$load_model(d$path)",
    sprintf("saveRDS(m$predict(d$x, verbose = 0L), '%s')", data)
  ), script)
  env <- paste0("R_LIBS=", paste(.libPaths(), collapse = ":"))
  status <- system2(file.path(R.home("bin"), "Rscript"), script, env = env,
                    stdout = FALSE, stderr = FALSE)
  expect_equal(status, 0)
  expect_identical(readRDS(data), want)
})

test_that("keras3's activation functions are saved by name", {
  skip_if_no_bnlstm()
  # keras3's activation_relu() and the like: R functions that carry the
  # name of Keras' own.
  relu <- structure(function(x) x, py_function_name = "relu")
  layer <- layer_bn_lstm(units = 3, activation = relu,
                         recurrent_activation = relu)
  config <- layer$get_config()
  expect_identical(config$activation, "relu")
  expect_identical(config$recurrent_activation, "relu")
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 3, input_shape = c(4, 2), activation = relu)
  path <- tempfile(fileext = ".keras")
  model$save(path)
  loaded <- keras()$saving$load_model(path)
  expect_identical(loaded$layers[[1]]$get_config()$activation, "relu")
})
