toy_series <- function(days = 120) {
  set.seed(1)
  data.frame(
    date = seq(as.Date("2020-01-01"), by = "day", length.out = days),
    sales = stats::rnorm(days, 100, 20),
    price = stats::runif(days, 4, 6),
    promotion = rbinom(days, 1, 0.3)
  )
}

prepare_toy <- function(data = toy_series(), ...) {
  args <- list(data = data, target = "sales", lookback = 14,
               train_end = "2020-03-15", validation_end = "2020-04-05",
               features = c("sales", "price", "promotion"))
  args[names(list(...))] <- list(...)
  do.call(prepare_forecast_data, args)
}

test_that("the bundled sales series is complete and daily", {
  sales <- read_daily_sales()
  expect_named(sales, c("date", "sales", "price", "promotion", "holiday"))
  expect_s3_class(sales$date, "Date")
  expect_equal(range(sales$date), as.Date(c("2008-01-01", "2017-12-31")))
  expect_true(all(diff(sales$date) == 1))
  expect_false(anyNA(sales))
})

test_that("the bundled retail sales are daily sales of 20 products", {
  retail <- read_online_retail()
  expect_named(retail, c("date", "product", "units", "price"))
  expect_s3_class(retail$date, "Date")
  expect_type(retail$product, "character")
  expect_length(unique(retail$product), 20)
  expect_false(anyDuplicated(retail[c("product", "date")]) > 0)
  expect_true(all(retail$units > 0) && all(retail$price > 0))
  expect_equal(range(retail$date), as.Date(c("2009-12-01", "2011-12-09")))
})

test_that("a real product's closed days are zero units at the last price", {
  skip_if_no_bnlstm()
  retail <- read_online_retail()
  product <- retail[retail$product == "22423", c("date", "units", "price")]
  data <- prepare_forecast_data(
    product, "units", lookback = 14, features = c("units", "price"),
    train_end = "2011-06-30", validation_end = "2011-09-30",
    gaps = list(units = "zero", price = "previous")
  )
  days <- seq(min(product$date), max(product$date), by = "day")
  units <- product$units[match(days, product$date)]
  units[is.na(units)] <- 0
  price <- product$price[match(days, product$date)]
  for (i in seq_along(price)[-1]) {
    if (is.na(price[i])) price[i] <- price[i - 1]
  }
  expect_gt(mean(units == 0), 0.1)
  for (period in list(data$train, data$validation, data$test)) {
    for (i in c(1, length(period$y))) {
      last <- match(period$dates[i], days) - 1
      expect_equal(as.numeric(inverse_scale(data, period$x[i, , 1])),
                   units[(last - 13):last], tolerance = 1e-4)
      expect_equal(as.numeric(inverse_scale(data, period$x[i, , 2], "price")),
                   price[(last - 13):last], tolerance = 1e-5)
      expect_equal(as.numeric(inverse_scale(data, period$y[i])),
                   units[last + 1], tolerance = 1e-4)
    }
  }
})

test_that("windows are R arrays matching the rows they were cut from", {
  skip_if_no_bnlstm()
  series <- toy_series()
  data <- prepare_toy(series, horizon = 2, known_ahead = "promotion")
  expect_s3_class(data, "bn_lstm_forecast_data")
  expect_equal(dim(data$train$x), c(120 - 14 - 1 - 21 - 24, 14, 3))
  expect_equal(dim(data$test$x), c(24, 14, 3))
  expect_length(data$validation$y, 21)
  expect_s3_class(data$test$dates, "Date")

  train <- series[series$date <= as.Date("2020-03-15"), ]
  scale <- function(column, rows) {
    (series[[column]][rows] - mean(train[[column]])) /
      sqrt(mean((train[[column]] - mean(train[[column]]))^2))
  }
  # Window i of the test period forecasts row `target`; its inputs end
  # `horizon` rows earlier, and the promotion column is read `horizon` later.
  i <- 5
  target <- match(data$test$dates[i], series$date)
  rows <- (target - 2 - 13):(target - 2)
  expect_equal(data$test$x[i, , 1], scale("sales", rows), tolerance = 1e-5)
  expect_equal(data$test$x[i, , 2], scale("price", rows), tolerance = 1e-5)
  expect_equal(data$test$x[i, , 3], scale("promotion", rows + 2),
               tolerance = 1e-5)
  expect_equal(data$test$y[i], scale("sales", target), tolerance = 1e-5)
  expect_equal(dim(data$test$y), 24)
})

test_that("periods follow the forecast dates and never leak", {
  skip_if_no_bnlstm()
  series <- toy_series()
  data <- prepare_toy(series)
  expect_equal(max(data$train$dates), as.Date("2020-03-15"))
  expect_equal(range(data$validation$dates),
               as.Date(c("2020-03-16", "2020-04-05")))
  expect_equal(min(data$test$dates), as.Date("2020-04-06"))

  changed <- series
  later <- changed$date > as.Date("2020-03-15")
  changed[later, c("sales", "price", "promotion")] <- 1e6
  other <- prepare_toy(changed, known_ahead = c("price", "promotion"))
  same <- prepare_toy(series, known_ahead = c("price", "promotion"))
  expect_identical(other$train$x, same$train$x)
  expect_identical(other$scaler, same$scaler)
})

test_that("inverse_scale() gives the target's units back", {
  skip_if_no_bnlstm()
  series <- toy_series()
  data <- prepare_toy(series)
  expect_equal(as.vector(inverse_scale(data, data$test$y)),
               series$sales[match(data$test$dates, series$date)],
               tolerance = 1e-5)
  predictions <- matrix(data$test$y, ncol = 1)
  expect_equal(dim(inverse_scale(data, predictions)), c(24, 1))
  expect_equal(inverse_scale(data, 0, "price"),
               mean(series$price[series$date <= as.Date("2020-03-15")]))
  expect_error(inverse_scale(data, 1, "cost"), "`column`.*sales, price")
  expect_error(inverse_scale(list(), 1), "`data`.*prepare_forecast_data")
  expect_error(inverse_scale(data, "a"), "`values`.*numbers")
})

test_that("gaps stop with the first missing day, or are interpolated", {
  skip_if_no_bnlstm()
  series <- toy_series()[-c(41, 42), ]
  expect_error(prepare_toy(series),
               "2 missing time step.*2020-02-10.*gaps='interpolate'")
  data <- prepare_toy(series, gaps = "interpolate")
  expect_equal(length(data$train$y) + length(data$validation$y) +
                 length(data$test$y), 120 - 14)
})

test_that("gaps are filled per column: zero sales, the previous price", {
  skip_if_no_bnlstm()
  full <- toy_series()
  series <- full[-c(41, 42), ]
  data <- prepare_toy(series, gaps = list(sales = "zero", price = "previous",
                                          promotion = "interpolate"))
  window <- data$train$x[30, , ]  # the window whose last day is the 43rd
  expect_equal(inverse_scale(data, window[12:13, 1]), c(0, 0),
               tolerance = 1e-4)
  expect_equal(inverse_scale(data, window[12:13, 2], "price"),
               rep(full$price[40], 2), tolerance = 1e-5)
  expect_equal(inverse_scale(data, window[14, 1]), full$sales[43],
               tolerance = 1e-5)
  expect_error(prepare_toy(series, gaps = list(sales = "zero")),
               "missing time step.*no method for \\['price', 'promotion'\\]")
})

test_that("bad data is stopped in R, naming what is wrong", {
  series <- toy_series()
  expect_error(prepare_toy(as.matrix(series)), "`data`.*data.frame")
  expect_error(prepare_toy(target = "units"),
               "`target`.*no column.*\"units\".*date, sales")
  expect_error(prepare_toy(target = c("sales", "price")), "`target`")
  expect_error(prepare_toy(features = c("sales", "cost")),
               "`features`.*\"cost\"")
  expect_error(prepare_toy(features = c("sales", "sales")),
               "`features`.*repeats")
  expect_error(prepare_toy(date = "day"), "`date`.*\"day\"")
  expect_error(prepare_toy(known_ahead = "holiday"), "`known_ahead`")
  expect_error(prepare_toy(series, features = c("sales", "price"),
                           known_ahead = "promotion"),
               "`known_ahead`.*among `features`")
  expect_error(prepare_toy(lookback = 0), "`lookback`.*positive whole")
  expect_error(prepare_toy(lookback = 200),
               "`lookback`.*needs at least 201 rows.*has 120")
  expect_error(prepare_toy(horizon = 1.5), "`horizon`")
  expect_error(prepare_toy(gaps = "drop"),
               "`gaps`.*\"error\", \"zero\", \"previous\", \"interpolate\"")
  expect_error(prepare_toy(gaps = list("zero")), "`gaps`.*named list")
  expect_error(prepare_toy(gaps = list(cost = "zero")),
               "`gaps`.*names must be among.*sales, price, promotion.*\"cost\"")
  expect_error(prepare_toy(gaps = list(price = "mean")),
               "`gaps`.*for column \"price\", got mean")
  expect_error(prepare_toy(train_end = "someday"), "`train_end`.*date")
  expect_error(prepare_toy(train_end = 2020), "`train_end`.*date")
  expect_error(prepare_toy(validation_end = "2020-03-01"),
               "train_end before validation_end")
  expect_error(prepare_toy(transform(series, price = as.character(price))),
               "price of `data` are not numeric \\(character\\)")
  expect_error(prepare_toy(transform(series, sales = replace(sales, 31, NA))),
               "sales of `data` hold NA.*row 31")
  expect_error(prepare_toy(transform(series, date = replace(date, 3, NA))),
               "missing date at row 3")
  expect_error(prepare_toy(transform(series, date = "not a date")),
               "does not hold dates.*\"not a date\"")
  expect_error(prepare_toy(transform(series, date = seq_along(date))),
               "does not hold dates \\(it is integer\\)")
})

test_that("bad data found in Python comes back as a plain R error", {
  skip_if_no_bnlstm()
  series <- toy_series()
  expect_error(prepare_toy(series[rev(seq_len(nrow(series))), ]),
               "^Column 'date' is not in increasing order: row 1")
  expect_error(prepare_toy(series[c(1:50, 50:120), ]),
               "not in increasing order: row 50")
  expect_error(prepare_toy(lookback = 80), "training period has no windows")
  expect_error(prepare_toy(validation_end = "2020-06-01"),
               "test period has no windows")
})

test_that("POSIXct dates and logical features are accepted", {
  skip_if_no_bnlstm()
  series <- toy_series()
  series$date <- as.POSIXct(series$date, tz = "UTC")
  series$promotion <- series$promotion == 1
  data <- prepare_toy(series)
  expect_equal(dim(data$train$x)[3], 3)
  expect_setequal(round(inverse_scale(data, data$train$x[, , 3], "promotion"),
                        4), c(0, 1))
})

test_that("forecast windows train a BN-LSTM from R", {
  skip_if_no_bnlstm()
  data <- prepare_toy()
  model <- regression_model(units = 4, input_shape = dim(data$train$x)[-1])
  history <- model$fit(data$train$x, data$train$y, epochs = 1L,
                       batch_size = 16L, verbose = 0L)
  predictions <- inverse_scale(data, model$predict(data$test$x, verbose = 0L))
  expect_equal(dim(predictions), c(24, 1))
  expect_true(all(is.finite(predictions)))
})

many_series <- function() {
  a <- toy_series(120)
  b <- toy_series(100)
  b$date <- b$date + 14
  c <- toy_series(90)
  c$date <- c$date + 9
  c$sales <- c$sales * 10
  rbind(cbind(a, store = "a"), cbind(b, store = "b"), cbind(c, store = "c"))
}

test_that("a key cuts each series alone and scales it on its own", {
  skip_if_no_bnlstm()
  stores <- many_series()
  data <- prepare_toy(stores, key = "store", known_ahead = "promotion")
  expect_equal(unique(data$train$key), c("a", "b", "c"))
  for (store in c("a", "b", "c")) {
    one <- stores[stores$store == store, names(stores) != "store"]
    alone <- prepare_toy(one, known_ahead = "promotion")
    for (period in c("train", "validation", "test")) {
      rows <- data[[period]]$key == store
      expect_equal(data[[period]]$x[rows, , ], alone[[period]]$x,
                   tolerance = 1e-6)
      expect_equal(as.numeric(data[[period]]$y[rows]),
                   as.numeric(alone[[period]]$y), tolerance = 1e-6)
      expect_equal(data[[period]]$dates[rows], alone[[period]]$dates)
    }
  }
  # Back to units, per series, at each window's forecast date.
  units <- inverse_scale(data, data$test$y, key = data$test$key)
  expect_null(dim(units))
  actual <- stores$sales[match(paste(data$test$key, data$test$dates),
                               paste(stores$store, stores$date))]
  expect_equal(units, actual, tolerance = 1e-4)
  prediction <- matrix(data$test$y, ncol = 1)
  expect_equal(dim(inverse_scale(data, prediction, key = data$test$key)),
               dim(prediction))
  expect_equal(as.numeric(inverse_scale(data, prediction, key = data$test$key) -
                            units), rep(0, length(units)), tolerance = 1e-6)
  expect_error(inverse_scale(data, data$test$y), "`key`.*data\\$test\\$key")
  expect_error(inverse_scale(data, data$test$y, key = "a"),
               "`key`.*one series per row")
  expect_error(inverse_scale(data, 1, key = "z"), "`key`.*\"z\" were not")

  global <- prepare_toy(stores, key = "store", scaling = "global")
  expect_null(global$scaler$keys)
  train <- stores[stores$date <= as.Date("2020-03-15"), ]
  expect_equal(global$scaler$mean[1], mean(train$sales), tolerance = 1e-8)
})

test_that("several horizons give one target column each", {
  skip_if_no_bnlstm()
  series <- toy_series()
  data <- prepare_toy(series, horizon = 1:3, known_ahead = "promotion")
  expect_equal(ncol(data$train$y), 3)
  expect_equal(dim(data$train$dates), dim(data$train$y))
  expect_equal(data$inputs, c("sales", "price", "promotion+1", "promotion+2",
                              "promotion+3"))
  expect_true(max(data$train$dates) <= as.Date("2020-03-15"))
  for (period in c("train", "validation", "test")) {
    dates <- data[[period]]$dates
    expect_equal(as.numeric(dates[, 3] - dates[, 1]), rep(2, nrow(dates)))
    expect_equal(dates[, 1], as.Date(series$date[match(dates[, 1], series$date)]))
  }
  units <- inverse_scale(data, data$test$y)
  expect_equal(dim(units), dim(data$test$y))
  last <- match(data$test$dates[1, 1], series$date) - 1
  expect_equal(units[1, ], series$sales[last + 1:3], tolerance = 1e-4)
})

test_that("bad keys and horizons stop in R, naming them", {
  stores <- many_series()
  expect_error(prepare_toy(stores, key = "shop"), "`key`.*\"shop\"")
  expect_error(prepare_toy(stores, key = "price"),
               "`key`.*the date, the target or a feature")
  expect_error(prepare_toy(stores, key = "store", scaling = "each"),
               "`scaling`.*\"series\", \"global\"")
  expect_error(prepare_toy(horizon = c(2, 1)), "`horizon`.*increasing")
  expect_error(prepare_toy(horizon = c(0, 1)), "`horizon`.*increasing")
  missing_key <- stores
  missing_key$store[8] <- NA
  expect_error(prepare_toy(missing_key, key = "store"),
               "`key`.*missing at row 8")
  skip_if_no_bnlstm()
  short <- stores[stores$store != "b" | stores$date < as.Date("2020-01-25"), ]
  expect_error(prepare_toy(short, key = "store"),
               "Series store='b'.*needs at least 15 rows")
  late <- stores[stores$store != "c" | stores$date <= as.Date("2020-03-25"), ]
  expect_warning(prepare_toy(late, key = "store"),
                 "Series store='c': The test period has no windows")
})
