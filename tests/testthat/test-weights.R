# A trained model goes wherever an LSTM's goes: its parameter count, its
# weights into a stateful twin and back, and an export for serving.

sequential <- function(layer, batch_size = NULL, timesteps = 10) {
  model <- keras()$Sequential()
  model$add(keras()$Input(shape = reticulate::tuple(as.integer(timesteps), 3L),
                          batch_size = batch_size))
  model$add(layer)
  model$add(keras()$layers$Dense(1L))
  model$compile(optimizer = "adam", loss = "mse")
  model
}

trained_model <- function(x, y) {
  model <- sequential(layer_bn_lstm(units = 8))
  model$fit(x, y, epochs = 2L, batch_size = 16L, verbose = 0L)
  # A last step leaves the statistics stale: reading the weights
  # re-estimates them, as a prediction would.
  model$train_on_batch(x[1:16, , , drop = FALSE], y[1:16, , drop = FALSE])
  model
}

test_that("count_params() is the LSTM's plus the normalization's", {
  skip_if_no_bnlstm()
  lstm <- sequential(keras()$layers$LSTM(8L))
  for (sample in c(512, 64, 0)) {
    bn <- sequential(layer_bn_lstm(units = 8, statistics_sample = sample))
    # gamma_x, gamma_h (32 each), gamma_c, beta_c (8 each), then 10 rows
    # of the means and variances of x W, h U (32 each) and c (8) and
    # their counts.
    extra <- 32 + 32 + 8 + 8 + 10 * (4 * 32 + 2 * 8 + 1)
    expect_equal(bn$count_params(), lstm$count_params() + extra)
  }
})

test_that("a stateful batch-1 twin predicts each window as the model", {
  skip_if_no_bnlstm()
  set.seed(5)
  x <- random_array(48, 10, 3)
  y <- matrix(x[, 10, 1] - x[, 9, 2], ncol = 1)
  model <- trained_model(x, y)
  weights <- model$get_weights()
  expect_length(weights, 7 + 7 + 2)
  sample_shape <- c(512, 10, 4)
  for (w in weights) expect_false(identical(dim(w), sample_shape))

  twin <- sequential(layer_bn_lstm(units = 8, stateful = TRUE),
                     batch_size = 1L)
  twin$set_weights(weights)
  one_by_one <- vapply(1:6, function(i) {
    twin$layers[[1]]$reset_state()
    twin$predict(x[i, , , drop = FALSE], verbose = 0L)[1, 1]
  }, numeric(1))
  expected <- model$predict(x[1:6, , , drop = FALSE], verbose = 0L)[, 1]
  expect_lt(max(abs(one_by_one - expected)), 1e-5)

  # And back: the twin's weights, after a step of its own, into a
  # stateless model.
  twin$layers[[1]]$reset_state()
  # (A batch of one sequence: the layer warns, on Python's side.)
  twin$train_on_batch(x[1, , , drop = FALSE], y[1, , drop = FALSE])
  back <- sequential(layer_bn_lstm(units = 8, statistics_sample = 0))
  back$set_weights(twin$get_weights())
  twin$layers[[1]]$reset_state()
  expect_lt(abs(back$predict(x[2, , , drop = FALSE], verbose = 0L)[1, 1] -
                  twin$predict(x[2, , , drop = FALSE], verbose = 0L)[1, 1]),
            1e-5)
})

test_that("model$export() serves predict()'s numbers", {
  skip_if_no_bnlstm()
  set.seed(6)
  x <- random_array(48, 10, 3)
  y <- matrix(x[, 10, 1], ncol = 1)
  model <- trained_model(x, y)
  path <- file.path(tempfile(), "served")
  # What keras3's export_savedmodel() calls.
  model$export(path, format = "tf_saved_model", verbose = FALSE)
  served <- reticulate::import("tensorflow")$saved_model$load(path)
  expected <- model$predict(x, verbose = 0L)
  got <- served$serve(reticulate::np_array(x, dtype = "float32"))$numpy()
  expect_lt(max(abs(got - expected)), 1e-5)
})
