#' Example daily sales series
#'
#' One store's daily unit sales from 2008-01-01 to 2017-12-31: synthetic,
#' generated with a fixed seed by `make_daily_sales.py` in the same folder
#' (trend, weekly and yearly seasonality, price changes, promotions,
#' holidays and autocorrelated noise).
#'
#' @return A data.frame with columns `date` (Date), `sales` (units sold),
#'   `price`, `promotion` (1 on promotion days) and `holiday` (1 on public
#'   holidays), one row per day.
#' @examples
#' sales <- read_daily_sales()
#' str(sales)
#' @export
read_daily_sales <- function() {
  path <- system.file("extdata", "daily_sales.csv", package = "bnlstm",
                      mustWork = TRUE)
  sales <- utils::read.csv(path)
  sales$date <- as.Date(sales$date)
  sales
}

#' Real daily sales of 20 products of an online retailer
#'
#' Daily units sold and the mean unit price paid, for the 20 products
#' ordered on the most invoices of a UK online retailer, 2009-12-01 to
#' 2011-12-09: derived from the "Online Retail II" data set (Chen, 2012,
#' UCI Machine Learning Repository, CC BY 4.0) by
#' `make_online_retail_daily.py`, with cancellations and returns dropped.
#' `online_retail_LICENSE.md` beside it has the citation, the rules and the
#' products' descriptions (`system.file("extdata", package = "bnlstm")`).
#'
#' A product has a row only on the days it sold: weekends, the Christmas
#' closing and the days before a product was listed have none. Give
#' [prepare_forecast_data()] the product's rows and
#' `gaps = list(units = "zero", price = "previous")`.
#'
#' @return A data.frame with columns `date` (Date), `product` (the stock
#'   code, character), `units` and `price`, ordered by product and date.
#' @examples
#' retail <- read_online_retail()
#' table(retail$product)
#' @export
read_online_retail <- function() {
  path <- system.file("extdata", "online_retail_daily.csv", package = "bnlstm",
                      mustWork = TRUE)
  retail <- utils::read.csv(path, colClasses = c(product = "character"))
  retail$date <- as.Date(retail$date)
  retail
}

#' Split, scale and window a dated series for forecasting
#'
#' Checks a data.frame, splits it by date into training, validation and
#' test periods, scales every column with the mean and standard deviation
#' of the training period only, and cuts it into sliding windows of
#' `lookback` steps: arrays of shape (samples, lookback, features), each
#' labelled with the target `horizon` steps after its last step. A window
#' belongs to the period of the date it forecasts; its inputs may reach
#' back into earlier periods, as a real forecast made that day would, but
#' no training window sees a validation or test value.
#'
#' The work is done by the Python function
#' `pybnlstm.prepare_forecast_data()`; argument errors are raised here,
#' before anything reaches Python.
#'
#' @param data A data.frame, one row per time step (per series with
#'   `key`), in date order within each series.
#' @param target Name of the column to forecast.
#' @param lookback Time steps per window.
#' @param train_end Last date of the training period (a Date or a string
#'   such as `"2016-12-31"`).
#' @param validation_end Last date of the validation period, after
#'   `train_end`; the test period is what follows.
#' @param features Input columns, in order; numeric or logical. Default:
#'   the target alone.
#' @param horizon How many steps after a window's last step its target
#'   lies (default `1`), or increasing steps such as `1:7` for the next
#'   seven days: `y` then has one column per horizon (a direct multi-output
#'   forecast), and a window belongs to the period of the last date it
#'   forecasts.
#' @param known_ahead Features known in advance (planned promotions,
#'   holidays): in each window they are taken `horizon` steps later, so the
#'   last step carries their value on the forecast date. With several
#'   horizons each becomes one input per horizon, named `"column+h"` in
#'   `inputs`, holding its value h steps later.
#' @param date Name of the date column (Date, POSIXct, or ISO strings).
#' @param gaps What to do with missing time steps (dates absent from the
#'   `freq` grid): one method for every column, or a named list of methods
#'   by column, such as `list(units = "zero", price = "previous")` (a
#'   missing day of sales is usually a day with none, while a price carries
#'   forward). The methods: `"error"` (the default, and that of columns the
#'   list leaves out) stops at the first gap; `"zero"` fills with 0;
#'   `"previous"` carries the last value forward; `"interpolate"` fills
#'   linearly in time.
#' @param freq The series' step as a pandas frequency: `"D"` (daily, the
#'   default), `"W"`, `"MS"`, ...
#' @param key Name of the column that tells series apart (a product, a
#'   store), or `NULL` for one series. Each series is gap-filled and cut
#'   into windows on its own, so no window crosses two, and series may
#'   differ in length and start date; the split dates apply to every
#'   series. A series with no windows in a period is named in a warning.
#' @param scaling With `key`: `"series"` (the default) scales each series
#'   with its own training period's mean and standard deviation,
#'   `"global"` all series with those of their training rows together.
#'
#' @return A list of class `bn_lstm_forecast_data` with elements `train`,
#'   `validation` and `test` (each a list of the inputs `x`, the scaled
#'   targets `y` as an array, one column per horizon with several, the
#'   forecast `dates` shaped as `y`, and with `key` the series of each
#'   window), `scaler` (the `columns`, `mean` and `scale` fitted on the
#'   training period, one row per series of `keys` with per-series
#'   scaling), `inputs` (the names along the last axis of `x`), `target`,
#'   `features`, `known_ahead`, `lookback`, `horizon` and `key`.
#'   [inverse_scale()] turns scaled predictions back into the target's
#'   units.
#' @examplesIf reticulate::py_module_available("keras")
#' sales <- read_daily_sales()
#' data <- prepare_forecast_data(
#'   sales, "sales", lookback = 28,
#'   train_end = "2016-12-31", validation_end = "2017-06-30",
#'   features = c("sales", "price", "promotion", "holiday"),
#'   known_ahead = c("price", "promotion", "holiday")
#' )
#' dim(data$train$x)
#' @export
prepare_forecast_data <- function(data, target, lookback, train_end,
                                  validation_end, features = target,
                                  horizon = 1, known_ahead = NULL,
                                  date = "date", gaps = "error", freq = "D",
                                  key = NULL,
                                  scaling = c("series", "global")) {
  if (!is.data.frame(data)) {
    stop_argument("data", "a data.frame", data)
  }
  target <- check_columns(target, "target", data, single = TRUE)
  features <- check_columns(features, "features", data)
  date <- check_columns(date, "date", data, single = TRUE)
  if (!is.null(known_ahead)) {
    known_ahead <- check_columns(known_ahead, "known_ahead", data)
    if (!all(known_ahead %in% features)) {
      stop_argument("known_ahead", "columns among `features`", known_ahead)
    }
  }
  columns <- unique(c(target, features))
  key <- check_key(key, data, c(date, columns))
  scaling <- check_choice(scaling, "scaling", c("series", "global"))
  lookback <- check_count(lookback, "lookback")
  horizon <- check_horizon(horizon)
  gaps <- check_gaps(gaps, columns)
  freq <- check_string(freq, "freq")
  train_end <- check_date(train_end, "train_end")
  validation_end <- check_date(validation_end, "validation_end")
  if (train_end >= validation_end) {
    stop("Received invalid values for arguments `train_end` and ",
         "`validation_end`: expected train_end before validation_end, got ",
         format(train_end), " and ", format(validation_end), ".",
         call. = FALSE)
  }
  needed <- lookback + max(horizon)
  if (is.null(key) && nrow(data) < needed) {
    stop("Received an invalid value for argument `lookback`: a window of ",
         lookback, " steps plus a horizon of ", max(horizon),
         " needs at least ", needed, " rows, but `data` has ", nrow(data),
         ".", call. = FALSE)
  }
  check_numeric_columns(data, columns)
  prepared <- rethrow_python(bnlstm_python()$prepare_forecast_data(
    pandas_frame(data, c(date, columns, key), date), target,
    lookback = lookback,
    horizon = if (length(horizon) == 1) horizon else as.list(horizon),
    train_end = format(train_end), validation_end = format(validation_end),
    features = as.list(features), known_ahead = as.list(known_ahead),
    date = date, gaps = gaps, freq = freq, key = key, scaling = scaling
  ))
  forecast_data_from_python(prepared, list(
    target = target, features = features,
    known_ahead = as.character(known_ahead), lookback = lookback,
    horizon = horizon, key = key
  ))
}

# The columns as a pandas DataFrame: dates checked, values as doubles, a
# factor key as its labels.
pandas_frame <- function(data, columns, date) {
  frame <- list()
  for (column in columns) {
    value <- data[[column]]
    frame[[column]] <- if (column == date) {
      check_date_column(value, date)
    } else if (is.factor(value) || is.character(value)) {
      as.character(value)
    } else {
      as.numeric(value)
    }
  }
  pandas <- reticulate::import("pandas", convert = FALSE)
  pandas$DataFrame(do.call(reticulate::dict, frame))
}

# Python's ForecastData as an R list: arrays, Dates, and the scaler's means
# and deviations (one row per series when each series was scaled alone).
forecast_data_from_python <- function(prepared, arguments) {
  numpy <- reticulate::import("numpy", convert = FALSE)
  # Through one dimension, in R's (column-major) order: reticulate 1.28
  # fills a matrix of strings in the wrong order.
  as_dates <- function(values) {
    shape <- unlist(reticulate::py_to_r(numpy$shape(values)))
    text <- reticulate::py_to_r(numpy$datetime_as_string(
      numpy$ravel(values, order = "F"), unit = "D"
    ))
    dates <- as.Date(as.vector(text))
    if (length(shape) > 1) dim(dates) <- shape
    dates
  }
  periods <- c("train", "validation", "test")
  windows <- stats::setNames(lapply(periods, function(period) {
    windows <- reticulate::py_get_attr(prepared, period)
    list(
      x = windows$x,
      # An array, which reticulate hands to NumPy as an array (a plain
      # vector would become a Python list).
      y = if (is.matrix(windows$y)) windows$y else array(windows$y),
      dates = as_dates(reticulate::py_get_attr(windows, "dates")),
      key = if (!is.null(arguments$key)) as.vector(unlist(windows$key))
    )
  }), periods)
  scaler <- prepared$scaler$get_config()
  as_table <- function(values) {
    if (is.null(scaler$keys)) unlist(values) else do.call(rbind, values)
  }
  structure(
    c(windows, list(
      scaler = list(columns = unlist(scaler$columns),
                    mean = as_table(scaler$mean),
                    scale = as_table(scaler$scale),
                    keys = unlist(scaler$keys)),
      inputs = unlist(prepared$inputs)
    ), arguments),
    class = "bn_lstm_forecast_data"
  )
}

#' Turn scaled values back into a column's units
#'
#' @param data What [prepare_forecast_data()] returned.
#' @param values Scaled values of `column`: a vector, matrix or array (for
#'   example `predict()`'s output, one row per window); the shape is kept,
#'   and a one-dimensional array (such as `data$test$y`) comes back as a
#'   plain vector, so that `prediction - actual` works.
#' @param column The column they belong to. Default: the target.
#' @param key With a `key` whose series were scaled each on its own: the
#'   series of each row of `values`, such as `data$test$key`.
#'
#' @return `values` in the column's units.
#' @examplesIf reticulate::py_module_available("keras")
#' sales <- read_daily_sales()
#' data <- prepare_forecast_data(sales, "sales", lookback = 28,
#'                               train_end = "2016-12-31",
#'                               validation_end = "2017-06-30")
#' head(inverse_scale(data, data$test$y))
#' @export
inverse_scale <- function(data, values, column = data$target, key = NULL) {
  if (!inherits(data, "bn_lstm_forecast_data")) {
    stop_argument("data", "the result of prepare_forecast_data()", data)
  }
  if (!is.numeric(values)) {
    stop_argument("values", "numbers", values)
  }
  column <- check_string(column, "column")
  index <- match(column, data$scaler$columns)
  if (is.na(index)) {
    stop_argument("column", paste0(
      "one of the scaled columns (",
      paste(data$scaler$columns, collapse = ", "), ")"
    ), column)
  }
  if (length(dim(values)) == 1) {
    values <- as.vector(values)
  }
  if (is.null(data$scaler$keys)) {
    return(values * data$scaler$scale[index] + data$scaler$mean[index])
  }
  rows <- series_rows(key, data$scaler$keys, NROW(values))
  # Recycling runs down the first dimension: one window's row at a time.
  values * data$scaler$scale[rows, index] + data$scaler$mean[rows, index]
}

series_rows <- function(key, keys, count) {
  if (is.null(key)) {
    stop("Received no value for argument `key`: each series was scaled on ",
         "its own, so the series of each value is needed (for example ",
         "key = data$test$key).", call. = FALSE)
  }
  if (length(key) != count) {
    stop("Received an invalid value for argument `key`: expected one series ",
         "per row of `values` (", count, "), got ", length(key), ".",
         call. = FALSE)
  }
  rows <- match(as.character(key), as.character(keys))
  if (anyNA(rows)) {
    stop("Received an invalid value for argument `key`: series ",
         paste0("\"", utils::head(key[is.na(rows)], 3), "\"", collapse = ", "),
         " were not scaled here.", call. = FALSE)
  }
  rows
}

#' @export
print.bn_lstm_forecast_data <- function(x, ...) {
  cat("Forecast windows: ", x$lookback, " steps of ",
      length(x$features), " feature(s) (",
      paste(x$features, collapse = ", "), ") -> ", x$target, " ",
      paste(x$horizon, collapse = ", "), " step(s) ahead",
      if (!is.null(x$key)) paste0(", ", length(unique(x$train$key)),
                                  " series by ", x$key),
      "\n", sep = "")
  for (period in c("train", "validation", "test")) {
    windows <- x[[period]]
    cat(sprintf("  %-10s %5d windows, forecasting %s to %s\n", period,
                NROW(windows$y), format(min(windows$dates)),
                format(max(windows$dates))))
  }
  invisible(x)
}

# A positive whole number, or increasing ones (several horizons).
check_horizon <- function(horizon) {
  if (length(horizon) == 1) {
    return(check_count(horizon, "horizon"))
  }
  whole <- is.numeric(horizon) && length(horizon) > 0 &&
    all(is.finite(horizon)) && all(horizon == round(horizon))
  if (!whole || any(horizon < 1) || any(diff(horizon) <= 0)) {
    stop_argument("horizon", paste(
      "a positive whole number, or increasing ones such as 1:7"
    ), horizon)
  }
  as.integer(horizon)
}

# The column that tells series apart, or NULL.
check_key <- function(key, data, others) {
  if (is.null(key)) {
    return(NULL)
  }
  key <- check_columns(key, "key", data, single = TRUE)
  if (key %in% others) {
    stop("Received an invalid value for argument `key`: \"", key, "\" is ",
         "the date, the target or a feature; expected the column that ",
         "tells series apart.", call. = FALSE)
  }
  if (anyNA(data[[key]])) {
    stop("Received an invalid value for argument `key`: column \"", key,
         "\" is missing at row ", which(is.na(data[[key]]))[1], ".",
         call. = FALSE)
  }
  key
}

gap_methods <- c("error", "zero", "previous", "interpolate")

# One gap method, or a dict of methods by column for Python.
check_gaps <- function(gaps, columns) {
  if (is.character(gaps) && length(gaps) == 1 && is.null(names(gaps))) {
    return(check_choice(gaps, "gaps", gap_methods))
  }
  named <- (is.list(gaps) || is.character(gaps)) && length(gaps) > 0 &&
    !is.null(names(gaps)) && all(nzchar(names(gaps)))
  if (!named) {
    stop_argument("gaps", paste0(
      "one of \"", paste(gap_methods, collapse = "\", \""),
      "\", or a named list of them by column"
    ), gaps)
  }
  unknown <- setdiff(names(gaps), columns)
  if (length(unknown) > 0) {
    stop("Received an invalid value for argument `gaps`: its names must be ",
         "among the target and features (", paste(columns, collapse = ", "),
         "), got ", paste0("\"", unknown, "\"", collapse = ", "), ".",
         call. = FALSE)
  }
  for (column in names(gaps)) {
    method <- gaps[[column]]
    if (!is.character(method) || length(method) != 1 ||
        !method %in% gap_methods) {
      stop("Received an invalid value for argument `gaps`: expected one of ",
           paste0("\"", gap_methods, "\"", collapse = ", "), " for column \"",
           column, "\", got ", paste(format(method), collapse = ", "), ".",
           call. = FALSE)
    }
  }
  do.call(reticulate::dict, as.list(gaps))
}

check_columns <- function(value, name, data, single = FALSE) {
  expected <- if (single) "a column name" else "column names"
  if (!is.character(value) || length(value) < 1 || anyNA(value) ||
      !all(nzchar(value)) || (single && length(value) != 1)) {
    stop_argument(name, paste0(expected, " (", if (single) "a string" else
      "a character vector", ")"), value)
  }
  if (anyDuplicated(value)) {
    stop_argument(name, "column names without repeats", value)
  }
  missing <- setdiff(value, names(data))
  if (length(missing)) {
    stop("Received an invalid value for argument `", name, "`: `data` has ",
         "no column(s) ", paste(dQuote(missing, FALSE), collapse = ", "),
         "; its columns are ", paste(names(data), collapse = ", "), ".",
         call. = FALSE)
  }
  value
}

check_numeric_columns <- function(data, columns) {
  numeric <- vapply(data[columns], function(v) {
    is.numeric(v) || is.logical(v)
  }, logical(1))
  if (!all(numeric)) {
    bad <- columns[!numeric]
    stop("Column(s) ", paste(bad, collapse = ", "), " of `data` are not ",
         "numeric (", paste(vapply(data[bad], function(v) class(v)[1], ""),
                            collapse = ", "),
         "); convert or encode them first.", call. = FALSE)
  }
  with_na <- columns[vapply(data[columns], function(v) {
    any(!is.finite(v))
  }, logical(1))]
  if (length(with_na)) {
    first <- which(!is.finite(data[[with_na[1]]]))[1]
    stop("Column(s) ", paste(with_na, collapse = ", "), " of `data` hold ",
         "NA, NaN or infinite values, the first in ", with_na[1], " at row ",
         first, "; fill or drop them first.", call. = FALSE)
  }
}

check_date <- function(value, name) {
  parsed <- if (length(value) == 1 && (inherits(value, "Date") ||
                                       is.character(value))) {
    tryCatch(as.Date(value), error = function(e) NA)
  } else {
    NA
  }
  if (is.na(parsed)) {
    stop_argument(name, "a date such as \"2016-12-31\"", value)
  }
  parsed
}

# ISO strings for Python; the time of day is kept for sub-daily series.
check_date_column <- function(value, name) {
  if (inherits(value, "POSIXt")) {
    out <- format(value, "%Y-%m-%dT%H:%M:%S")
  } else if (inherits(value, "Date")) {
    out <- format(value)
  } else if (is.character(value) || is.factor(value)) {
    out <- as.character(value)
    if (anyNA(as.Date(out, optional = TRUE))) {
      stop("Column ", name, " of `data` does not hold dates: \"",
           out[is.na(as.Date(out, optional = TRUE))][1],
           "\" is not a date such as \"2016-12-31\".", call. = FALSE)
    }
  } else {
    stop("Column ", name, " of `data` does not hold dates (it is ",
         class(value)[1], "); use Date, POSIXct or \"YYYY-MM-DD\" strings.",
         call. = FALSE)
  }
  if (anyNA(out)) {
    stop("Column ", name, " of `data` has a missing date at row ",
         which(is.na(out))[1], ".", call. = FALSE)
  }
  out
}

# Python's ValueError and TypeError become R errors with Python's message,
# and its warnings (a series without windows in a period, say), recorded
# during the call, R warnings.
rethrow_python <- function(expr) {
  warnings_module <- reticulate::import("warnings", convert = FALSE)
  recorder <- warnings_module$catch_warnings(record = TRUE)
  caught <- recorder$`__enter__`()
  warnings_module$simplefilter("always")
  result <- tryCatch(expr, error = function(e) {
    stop(trimws(sub("^[A-Za-z.]*(Error|Exception): ", "",
                    conditionMessage(e))),
         call. = FALSE)
  }, finally = recorder$`__exit__`(NULL, NULL, NULL))
  for (caught_warning in reticulate::py_to_r(caught)) {
    warning(reticulate::py_str(caught_warning$message), call. = FALSE)
  }
  result
}
