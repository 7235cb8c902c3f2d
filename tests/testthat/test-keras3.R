# With the real keras3 client, where it is installed (it is not on the CI
# machine, whose reticulate is too old for it): the user's workflow of
# swapping layer_lstm() for layer_bn_lstm() and nothing else.

test_that("keras3: a Sequential model from keras_model_sequential()", {
  skip_if_not_installed("keras3")
  skip_if_no_bnlstm()
  set.seed(3)
  x <- random_array(40, 12, 3)
  y <- matrix(x[, 12, 1] - x[, 11, 2], ncol = 1)
  model <- keras3::keras_model_sequential(input_shape = c(12, 3)) |>
    layer_bn_lstm(units = 6, return_sequences = TRUE, dropout = 0.1) |>
    layer_bn_lstm(units = 4) |>
    keras3::layer_dense(units = 1)
  model |> keras3::compile(optimizer = "adam", loss = "mse")
  history <- model |>
    keras3::fit(x, y, epochs = 2, batch_size = 16, validation_split = 0.1,
                verbose = 0)
  expect_length(history$metrics$loss, 2)
  prediction <- model |> predict(x, verbose = 0)
  expect_equal(dim(prediction), c(40, 1))
  expect_true(all(is.finite(prediction)))

  # Parameters, as summary() counts them.
  lstm <- keras3::keras_model_sequential(input_shape = c(12, 3)) |>
    keras3::layer_lstm(units = 6)
  bn <- keras3::keras_model_sequential(input_shape = c(12, 3)) |>
    layer_bn_lstm(units = 6)
  # The LSTM's kernels and bias, gamma_x (24), gamma_h (24), gamma_c and
  # beta_c (6 each), 12 rows of six statistics (24, 24, 24, 24, 6, 6) and
  # their counts. The reference sample is state, not parameters.
  extra <- 24 + 24 + 6 + 6 + 12 * (4 * 24 + 2 * 6 + 1)
  expect_equal(bn$count_params(), lstm$count_params() + extra)
  expect_equal(keras3::count_params(bn), lstm$count_params() + extra)

  path <- tempfile(fileext = ".keras")
  keras3::save_model(model, path)
  reloaded <- keras3::load_model(path)
  expect_equal(reloaded |> predict(x, verbose = 0), prediction,
               tolerance = 1e-6)
})

test_that("keras3: pad_sequences() in front and layer_masking()", {
  skip_if_not_installed("keras3")
  skip_if_no_bnlstm()
  set.seed(4)
  lengths <- c(3, 7, 5, 8)
  sequences <- lapply(lengths, function(n) matrix(runif(2 * n), n, 2))
  # pad_sequences() pads each sequence's flattened steps in front.
  flat <- keras3::pad_sequences(
    lapply(sequences, function(s) as.numeric(t(s))),
    maxlen = 2 * 8, dtype = "float32"
  )
  padded <- aperm(array(flat, c(4, 2, 8)), c(1, 3, 2))
  model <- keras3::keras_model_sequential(input_shape = c(NA, 2)) |>
    keras3::layer_masking(mask_value = 0) |>
    layer_bn_lstm(units = 3, max_timesteps = 8) |>
    keras3::layer_dense(units = 1)
  model |> keras3::compile(optimizer = "adam", loss = "mse")
  model |> keras3::fit(padded, matrix(runif(4), ncol = 1), epochs = 1,
                       verbose = 0)
  together <- model |> predict(padded, verbose = 0)
  alone <- vapply(sequences, function(s) {
    model |> predict(array(s, c(1, dim(s))), verbose = 0)
  }, numeric(1))
  expect_lt(max(abs(together[, 1] - alone)), 1e-5)
})

test_that("keras3: bidirectional(layer_bn_lstm())", {
  skip_if_not_installed("keras3")
  skip_if_no_bnlstm()
  model <- keras3::keras_model_sequential(input_shape = c(6, 2)) |>
    keras3::bidirectional(layer_bn_lstm(units = 3)) |>
    keras3::layer_dense(units = 1)
  expect_equal(unlist(model$output_shape), 1)
  model |> keras3::compile(optimizer = "adam", loss = "mse")
  model |> keras3::fit(random_array(8, 6, 2), matrix(runif(8), ncol = 1),
                       epochs = 1, verbose = 0)
  expect_true(all(is.finite(model |> predict(random_array(3, 6, 2),
                                               verbose = 0))))
})
