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
  model <- regression_model(units = 6, input_shape = c(8, 2), dropout = 0.1)
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
                 "pybnlstm in use is version 0.0.0")
})

test_that("a missing Python package gets an error that says what to do", {
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(bnlstm)",
    "r <- tryCatch(layer_bn_lstm(units = 4), error = conditionMessage)",
    "cat(r, '\\n')"
  ), script)
  # A Python without Keras: a bare virtual environment.
  bare <- file.path(tempfile(), "venv")
  system2(reticulate::py_exe(), c("-m", "venv", "--without-pip", bare))
  env <- c(paste0("RETICULATE_PYTHON=", file.path(bare, "bin", "python")),
           paste0("R_LIBS=", paste(.libPaths(), collapse = ":")))
  out <- paste(system2(file.path(R.home("bin"), "Rscript"), script,
                       env = env, stdout = TRUE, stderr = TRUE),
               collapse = "\n")
  expect_match(out, "keras, numpy, pandas cannot be found")
  expect_match(out, "install_bnlstm()", fixed = TRUE)
})

test_that("the plain path: the first predict after training re-estimates", {
  skip_if_no_bnlstm()
  x <- random_array(24, 6, 2)
  y <- random_array(24, 1)
  model <- regression_model(units = 4, input_shape = c(6, 2))
  layer <- model$layers[[1]]
  model$fit(x, y, epochs = 1L, batch_size = 8L, verbose = 0L)
  # fit() ends with the statistics re-estimated; a step after it leaves
  # them stale.
  expect_false(layer$statistics_stale)
  model$train_on_batch(x[1:8, , , drop = FALSE], y[1:8, , drop = FALSE])
  expect_true(layer$statistics_stale)
  variance_h <- function() layer$cell$moving_variance_h$numpy()
  before <- variance_h()
  first <- model$predict(x, verbose = 0L)
  expect_false(layer$statistics_stale)
  expect_gt(max(abs(variance_h() - before)), 1e-6)
  expect_equal(model$predict(x, verbose = 0L), first)
})

test_that("padding in front, as pad_sequences() does, changes nothing", {
  skip_if_no_bnlstm()
  set.seed(2)
  lengths <- c(6, 3, 5, 2)
  series <- lapply(lengths, function(n) matrix(runif(n * 2) + 0.5, n, 2))
  # What pad_sequences() returns by default: zeros in front.
  padded <- array(0, c(length(series), 6, 2))
  for (i in seq_along(series)) {
    n <- lengths[i]
    padded[i, (6 - n + 1):6, ] <- series[[i]]
  }
  inputs <- keras()$Input(shape = reticulate::tuple(NULL, 2L))
  masked <- keras()$layers$Masking(mask_value = 0)(inputs)
  outputs <- masked |>
    layer_bn_lstm(units = 4, max_timesteps = 6, return_sequences = TRUE) |>
    layer_bn_lstm(units = 3, max_timesteps = 6)
  model <- keras()$Model(inputs, outputs)
  model$compile(optimizer = "adam", loss = "mse")
  model$fit(padded, random_array(4, 3), epochs = 2L, batch_size = 2L,
            verbose = 0L)
  predicted <- model$predict(padded, verbose = 0L)
  for (i in seq_along(series)) {
    alone <- model$predict(array(series[[i]], c(1, lengths[i], 2)),
                           verbose = 0L)
    expect_lt(max(abs(predicted[i, ] - alone)), 1e-5)
  }
})

test_that("input shapes as keras3's shape(), lists and tuples", {
  skip_if_no_bnlstm()
  # keras3's shape(10, 3) is a list of that class.
  for (given in list(list(10, 3), structure(list(10L, 3L), class = "keras_shape"),
                     reticulate::tuple(10L, 3L))) {
    model <- keras()$Sequential() |> layer_bn_lstm(units = 2, input_shape = given)
    expect_equal(unlist(model$inputs[[1]]$shape), c(10, 3))
  }
  open <- keras()$Sequential() |>
    layer_bn_lstm(units = 2, input_shape = list(NULL, 3), max_timesteps = 4)
  expect_null(open$inputs[[1]]$shape[[2]])
  expect_error(layer_bn_lstm(units = 2, input_shape = list("a", 3)),
               "input_shape")
})

test_that("input_shape on a model that has its input is ignored", {
  skip_if_no_bnlstm()
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 4, input_shape = c(6, 2), return_sequences = TRUE) |>
    layer_bn_lstm(units = 3, input_shape = c(6, 2))
  expect_length(model$layers, 2)
  expect_equal(unlist(model$output_shape), 3)
})
