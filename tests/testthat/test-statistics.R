test_that("recompute_statistics averages over the batches", {
  skip_if_no_bnlstm()
  x <- random_array(10, 5, 2)
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 3, input_shape = c(5, 2))
  changes <- recompute_statistics(model, x, batch_size = 4, verbose = 0)
  expect_length(changes, 1)
  expect_equal(changes[[1]]$batches, 3)
  expect_equal(changes[[1]]$rows, 5)
  counts <- model$layers[[1]]$cell$moving_count$numpy()
  expect_equal(as.vector(counts), rep(3, 5))
  expect_error(recompute_statistics(model, x, batch_size = 0), "`batch_size`")
  expect_error(recompute_statistics(model, "x"), "`x`")
  expect_error(recompute_statistics("model", x), "`model`")
  expect_error(recompute_statistics(model, data.frame(a = 1:3)),
               "`x`.*array of windows.*class data.frame")
  expect_error(recompute_statistics(model, x, shuffle = "yes"), "`shuffle`")
})

test_that("shuffle reaches Python: sorted data gives other h statistics", {
  skip_if_no_bnlstm()
  # Sample i is i everywhere: batches in row order each hold 4 neighbours.
  x <- array(rep(seq_len(12), 5 * 2), c(12, 5, 2))
  keras()$utils$set_random_seed(0L)
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 3, input_shape = c(5, 2))
  variance_h <- function() model$layers[[1]]$cell$moving_variance_h$numpy()
  recompute_statistics(model, x, batch_size = 4, verbose = 0)
  shuffled <- variance_h()
  recompute_statistics(model, x, batch_size = 4, verbose = 0,
                       shuffle = FALSE)
  # Row 1 is the recurrent term of the zero initial state: variance 0.
  # Ignoring `shuffle` would give the same numbers to float precision.
  later <- -1
  expect_gt(max(abs(variance_h()[later, ] - shuffled[later, ]) /
                  shuffled[later, ]), 1e-3)
})

test_that("the callback re-estimates at the end of fit()", {
  skip_if_no_bnlstm()
  x <- random_array(8, 5, 2)
  y <- random_array(8, 1)
  model <- regression_model(units = 3, input_shape = c(5, 2))
  callback <- callback_bn_lstm_statistics(list(x, y), batch_size = 4)
  expect_s3_class(callback, "keras.src.callbacks.callback.Callback")
  model$fit(x, y, epochs = 2L, batch_size = 4L, verbose = 0L,
            callbacks = list(callback))
  counts <- model$layers[[1]]$cell$moving_count$numpy()
  # Exact averages over the 2 batches, not 4 moving-average updates.
  expect_equal(as.vector(counts), rep(2, 5))
  expect_error(callback_bn_lstm_statistics(x, before_validation = NA),
               "`before_validation`")
})

test_that("after one epoch from R, inference is as accurate as training", {
  skip_if_no_bnlstm()
  if (!reticulate::py_module_available("sklearn")) {
    skip("scikit-learn (the bundled digits) is not available")
  }
  digits <- reticulate::import("sklearn.datasets")$load_digits()
  keep <- seq_len(512)
  x <- array(digits$data[keep, ] / 16, c(length(keep), 64, 1))
  y <- digits$target[keep]
  keras()$utils$set_random_seed(0L)
  model <- keras()$Sequential() |>
    layer_bn_lstm(units = 32, input_shape = c(64, 1))
  model$add(keras()$layers$Dense(10L, activation = "softmax"))
  model$compile(optimizer = keras()$optimizers$Adam(3e-3),
                loss = "sparse_categorical_crossentropy",
                metrics = list("accuracy"))
  model$fit(x, y, epochs = 1L, batch_size = 64L, verbose = 0L,
            callbacks = list(callback_bn_lstm_statistics(x, batch_size = 64)))
  inference <- model$evaluate(x, y, batch_size = 64L, verbose = 0L)[[2]]
  training <- mean(unlist(lapply(split(keep, (keep - 1) %/% 64), function(i) {
    p <- keras()$ops$convert_to_numpy(
      model(x[i, , , drop = FALSE], training = TRUE))
    max.col(p) - 1 == y[i]
  })))
  expect_gt(training, 0.2)
  expect_lt(abs(inference - training), 0.05)
})
