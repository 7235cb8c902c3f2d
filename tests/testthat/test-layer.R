test_that("pipes into a Sequential model, first layer with input_shape", {
  skip_if_no_bnlstm()
  model <- keras()$Sequential()
  out <- model |>
    layer_bn_lstm(units = 8, input_shape = c(10, 3), return_sequences = TRUE) |>
    layer_bn_lstm(units = 4)
  expect_identical(out, model)
  expect_length(model$layers, 2)
  expect_s3_class(model$layers[[1]], "pybnlstm.layer.BNLSTM")
  expect_equal(unlist(model$output_shape), 4)
  expect_equal(model$layers[[1]]$max_timesteps, 10L)
  expect_invisible(layer_bn_lstm(keras()$Sequential(), units = 2,
                                 input_shape = c(3, 1)))
})

test_that("input_shape with NA and max_timesteps; batch_size fixes it", {
  skip_if_no_bnlstm()
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 3, input_shape = c(NA, 2), max_timesteps = 5)
  expect_null(model$inputs[[1]]$shape[[2]])
  stateful <- keras()$Sequential() |>
    layer_bn_lstm(units = 3, input_shape = c(5, 2), batch_size = 4,
                  stateful = TRUE)
  expect_equal(stateful$inputs[[1]]$shape[[1]], 4L)
  expect_error(layer_bn_lstm(units = 3, batch_size = 4), "batch_size")
})

test_that("the functional API and wrappers", {
  skip_if_no_bnlstm()
  inputs <- keras()$Input(shape = reticulate::tuple(6L, 2L))
  outputs <- layer_bn_lstm(inputs, units = 5, return_sequences = TRUE)
  expect_equal(unlist(outputs$shape), c(6, 5))
  layer <- layer_bn_lstm(units = 3)
  expect_s3_class(layer, "pybnlstm.layer.BNLSTM")
  both <- keras()$layers$Bidirectional(layer)(inputs)
  expect_equal(unlist(both$shape), 6)
  states <- layer_bn_lstm(inputs, units = 3, return_state = TRUE)
  expect_length(states, 3)
})

test_that("fit and predict on R arrays", {
  skip_if_no_bnlstm()
  set.seed(1)
  x <- random_array(30, 8, 2)
  y <- matrix(rowMeans(x[, 8, ]), 30, 1)
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 6, input_shape = c(8, 2), dropout = 0.1)
  model$add(keras()$layers$Dense(1L))
  model$compile(optimizer = "adam", loss = "mse")
  history <- model$fit(x, y, epochs = 2L, batch_size = 7L, verbose = 0L)
  expect_length(history$history$loss, 2)
  prediction <- model$predict(x, verbose = 0L)
  expect_equal(dim(prediction), c(30, 1))
  expect_true(all(is.finite(prediction)))
  # Inference does not depend on the batch. A smaller batch only changes
  # float32 rounding (a 2e-8 gap was seen), which a relative tolerance
  # flags on outputs near 0, so the gap is bounded in absolute terms.
  alone <- model$predict(x[1:3, , , drop = FALSE], verbose = 0L)
  expect_lt(max(abs(alone - prediction[1:3, , drop = FALSE])), 1e-6)
})

test_that("a version mismatch is reported", {
  skip_if_no_bnlstm()
  module <- bnlstm:::bnlstm_python()
  expect_identical(module$`__version__`,
                   as.character(utils::packageVersion("bnlstm")))
  state <- bnlstm:::.bnlstm
  on.exit(state$checked <- TRUE)
  state$checked <- NULL
  expect_warning(bnlstm:::check_versions("0.0.0"),
                 "pybnlstm is version 0.0.0")
})

test_that("a missing Python package gets an error that says what to do", {
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(bnlstm)",
    "r <- tryCatch(layer_bn_lstm(units = 4), error = conditionMessage)",
    "cat(r, '\\n')"
  ), script)
  # A Python without pybnlstm: a bare virtual environment.
  bare <- file.path(tempfile(), "venv")
  system2(reticulate::py_exe(), c("-m", "venv", "--without-pip", bare))
  env <- c(paste0("RETICULATE_PYTHON=", file.path(bare, "bin", "python")),
           paste0("R_LIBS=", paste(.libPaths(), collapse = ":")))
  out <- paste(system2(file.path(R.home("bin"), "Rscript"), script,
                       env = env, stdout = TRUE, stderr = TRUE),
               collapse = "\n")
  expect_match(out, "pybnlstm")
  expect_match(out, "install_bnlstm()", fixed = TRUE)
})
