test_that("bad arguments fail in R, naming the argument", {
  expect_error(layer_bn_lstm(units = 0), "`units`.*positive whole")
  expect_error(layer_bn_lstm(units = "abc"), "`units`.*\"abc\"")
  expect_error(layer_bn_lstm(units = 2.5), "`units`")
  expect_error(layer_bn_lstm(units = NA), "`units`")
  expect_error(layer_bn_lstm(units = c(1, 2)), "`units`")
  expect_error(layer_bn_lstm(), "`units`")
  expect_error(layer_bn_lstm(units = 4, dropout = 2), "`dropout`.*\\[0, 1\\)")
  expect_error(layer_bn_lstm(units = 4, recurrent_dropout = -0.1),
               "`recurrent_dropout`")
  expect_error(layer_bn_lstm(units = 4, momentum = 1.5), "`momentum`")
  expect_error(layer_bn_lstm(units = 4, epsilon = 0), "`epsilon`")
  expect_error(layer_bn_lstm(units = 4, max_timesteps = 0), "`max_timesteps`")
  expect_error(layer_bn_lstm(units = 4, seed = 1.5), "`seed`")
  expect_error(layer_bn_lstm(units = 4, return_sequences = "yes"),
               "`return_sequences`.*TRUE or FALSE")
  expect_error(layer_bn_lstm(units = 4, synchronized = NA),
               "`synchronized`.*TRUE or FALSE")
  expect_error(layer_bn_lstm(units = 4, use_xla = "yes"),
               "`use_xla`.*\"auto\", TRUE or FALSE")
  expect_error(layer_bn_lstm(units = 4, use_xla = NA), "`use_xla`")
  expect_error(layer_bn_lstm(units = 4, input_statistics = "time"),
               "`input_statistics`.*one of \"step\", \"sequence\"")
  expect_error(layer_bn_lstm(units = 4, input_statistics = NA),
               "`input_statistics`")
  expect_error(layer_bn_lstm(units = 4, statistics_sample = -1),
               "`statistics_sample`.*whole number >= 0")
  expect_error(layer_bn_lstm(units = 4, statistics_sample = 2.5),
               "`statistics_sample`")
  expect_error(layer_bn_lstm(units = 4, input_shape = c(0, 3)),
               "`input_shape`")
  expect_error(layer_bn_lstm(units = 4, input_shape = "10"), "`input_shape`")
  expect_error(layer_bn_lstm(units = 4, name = 3), "`name`")
  expect_error(layer_bn_lstm(units = 4, activation = 3), "`activation`")
})

test_that("bad arguments never reach Python", {
  # A Python that cannot start: only an R check can produce these errors.
  script <- tempfile(fileext = ".R")
  writeLines(c(
    "library(bnlstm)",
    "r <- tryCatch(layer_bn_lstm(units = 0), error = conditionMessage)",
    "cat(r, '\\n')",
    "sales <- read_daily_sales()",
    "r <- tryCatch(prepare_forecast_data(sales, 'units', lookback = 7,",
    "  train_end = '2016-12-31', validation_end = '2017-06-30'),",
    "  error = conditionMessage)",
    "cat(r, '\\n')",
    "cat('initialized:', reticulate::py_available(), '\\n')"
  ), script)
  env <- c("RETICULATE_PYTHON=/nonexistent/python",
           paste0("R_LIBS=", paste(.libPaths(), collapse = ":")))
  out <- system2(file.path(R.home("bin"), "Rscript"), script, env = env,
                 stdout = TRUE, stderr = TRUE)
  expect_match(paste(out, collapse = "\n"), "`units`.*positive whole")
  expect_match(paste(out, collapse = "\n"), "`target`.*no column.*\"units\"")
  expect_match(paste(out, collapse = "\n"), "initialized: FALSE")
})

test_that("only the given arguments are passed, numbers become integers", {
  args <- bnlstm:::bn_lstm_arguments(list(units = 64, max_timesteps = 10,
                                          seed = 3, dropout = 0.25,
                                          kernel_regularizer = NULL))
  expect_identical(args, list(units = 64L, max_timesteps = 10L, seed = 3L,
                              dropout = 0.25, kernel_regularizer = NULL))
  skip_if_no_bnlstm()
  layer <- layer_bn_lstm(units = 64, gamma_initializer = 1)
  config <- layer$get_config()
  expect_identical(config$units, 64L)
  expect_identical(config$momentum, 0.5) # the Python default
  expect_equal(config$gamma_initializer$config$value, 1)
  expect_true(layer_bn_lstm(units = 4, synchronized = TRUE)$synchronized)
  expect_false(layer_bn_lstm(units = 4, use_xla = FALSE)$use_xla)
  expect_identical(layer_bn_lstm(units = 4)$use_xla, "auto")
  expect_identical(layer_bn_lstm(units = 4)$statistics_sample, 512L)
  expect_identical(
    layer_bn_lstm(units = 4, statistics_sample = 0)$statistics_sample, 0L)
  expect_identical(
    layer_bn_lstm(units = 4, input_statistics = "sequence")$input_statistics,
    "sequence")
  # Code written for layer_lstm() may pass use_cudnn; it reaches Python.
  expect_false(layer_bn_lstm(units = 4, use_cudnn = FALSE)$use_cudnn)
})

test_that("input_shape becomes a tuple, NA meaning unknown", {
  shape <- bnlstm:::check_shape(c(NA, 3), "input_shape")
  expect_s3_class(shape, "python.builtin.tuple")
  expect_identical(reticulate::py_to_r(shape), list(NULL, 3L))
})
