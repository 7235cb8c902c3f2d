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
#' @param data A data.frame, one row per time step, in date order.
#' @param target Name of the column to forecast.
#' @param lookback Time steps per window.
#' @param train_end Last date of the training period (a Date or a string
#'   such as `"2016-12-31"`).
#' @param validation_end Last date of the validation period, after
#'   `train_end`; the test period is what follows.
#' @param features Input columns, in order; numeric or logical. Default:
#'   the target alone.
#' @param horizon How many steps after a window's last step its target
#'   lies. Default: `1`.
#' @param known_ahead Features known in advance (planned promotions,
#'   holidays): in each window they are taken `horizon` steps later, so the
#'   last step carries their value on the forecast date.
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
#'
#' @return A list of class `bn_lstm_forecast_data` with elements `train`,
#'   `validation` and `test` (each a list of the inputs `x`, the scaled
#'   targets `y` as a one-dimensional array, and the forecast `dates`), `scaler` (the `columns`, `mean` and `scale` fitted on the
#'   training period), `target`, `features`, `known_ahead`, `lookback`
#'   and `horizon`. [inverse_scale()] turns scaled predictions back into
#'   the target's units.
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
                                  date = "date",
                                  gaps = "error",
                                  freq = "D") {
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
  lookback <- check_count(lookback, "lookback")
  horizon <- check_count(horizon, "horizon")
  gaps <- check_gaps(gaps, unique(c(target, features)))
  freq <- check_string(freq, "freq")
  train_end <- check_date(train_end, "train_end")
  validation_end <- check_date(validation_end, "validation_end")
  if (train_end >= validation_end) {
    stop("Received invalid values for arguments `train_end` and ",
         "`validation_end`: expected train_end before validation_end, got ",
         format(train_end), " and ", format(validation_end), ".",
         call. = FALSE)
  }
  if (nrow(data) < lookback + horizon) {
    stop("Received an invalid value for argument `lookback`: a window of ",
         lookback, " steps plus a horizon of ", horizon, " needs at least ",
         lookback + horizon, " rows, but `data` has ", nrow(data), ".",
         call. = FALSE)
  }
  columns <- unique(c(target, features))
  check_numeric_columns(data, columns)
  dates <- check_date_column(data[[date]], date)

  frame <- list()
  frame[[date]] <- dates
  for (column in columns) {
    frame[[column]] <- as.numeric(data[[column]])
  }
  pandas <- reticulate::import("pandas", convert = FALSE)
  prepared <- rethrow_python(bnlstm_python()$prepare_forecast_data(
    pandas$DataFrame(do.call(reticulate::dict, frame)), target,
    lookback = lookback, horizon = horizon,
    train_end = format(train_end), validation_end = format(validation_end),
    features = as.list(features), known_ahead = as.list(known_ahead),
    date = date, gaps = gaps, freq = freq
  ))

  periods <- c("train", "validation", "test")
  numpy <- reticulate::import("numpy")
  scaler <- prepared$scaler$get_config()
  structure(
    c(
      stats::setNames(lapply(periods, function(period) {
        windows <- reticulate::py_get_attr(prepared, period)
        list(
          x = windows$x,
          # A one-dimensional array, which reticulate hands to NumPy as an
          # array (a plain vector would become a Python list).
          y = array(windows$y),
          dates = as.Date(numpy$datetime_as_string(
            reticulate::py_get_attr(windows, "dates"), unit = "D"
          ))
        )
      }), periods),
      list(
        scaler = list(columns = unlist(scaler$columns),
                      mean = unlist(scaler$mean),
                      scale = unlist(scaler$scale)),
        target = target, features = features,
        known_ahead = as.character(known_ahead),
        lookback = lookback, horizon = horizon
      )
    ),
    class = "bn_lstm_forecast_data"
  )
}

#' Turn scaled values back into a column's units
#'
#' @param data What [prepare_forecast_data()] returned.
#' @param values Scaled values of `column`: a vector, matrix or array (for
#'   example `predict()`'s output); the shape is kept.
#' @param column The column they belong to. Default: the target.
#'
#' @return `values` in the column's units.
#' @examplesIf reticulate::py_module_available("keras")
#' sales <- read_daily_sales()
#' data <- prepare_forecast_data(sales, "sales", lookback = 28,
#'                               train_end = "2016-12-31",
#'                               validation_end = "2017-06-30")
#' head(inverse_scale(data, data$test$y))
#' @export
inverse_scale <- function(data, values, column = data$target) {
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
  values * data$scaler$scale[index] + data$scaler$mean[index]
}

#' @export
print.bn_lstm_forecast_data <- function(x, ...) {
  cat("Forecast windows: ", x$lookback, " steps of ",
      length(x$features), " feature(s) (",
      paste(x$features, collapse = ", "), ") -> ", x$target, " ",
      x$horizon, " step(s) ahead\n", sep = "")
  for (period in c("train", "validation", "test")) {
    windows <- x[[period]]
    cat(sprintf("  %-10s %5d windows, forecasting %s to %s\n", period,
                length(windows$y), format(min(windows$dates)),
                format(max(windows$dates))))
  }
  invisible(x)
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

# Python's ValueError and TypeError become R errors with Python's message.
rethrow_python <- function(expr) {
  tryCatch(expr, error = function(e) {
    stop(trimws(sub("^[A-Za-z.]*(Error|Exception): ", "",
                    conditionMessage(e))),
         call. = FALSE)
  })
}
