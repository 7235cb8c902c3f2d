# Forecasting daily sales from R: a stacked LSTM, the same with
# BatchNormalization between its layers, and the same stack of BN-LSTM
# layers, trained on the same windows with the same early stopping, for
# one seed or several (--seeds). By default the data are real: 20 products
# of a UK online retailer (Online Retail II), one global model forecasting
# each product's next 7 days; --data synthetic forecasts the bundled
# generated series one day ahead instead. Prints test errors in units sold,
# overall and by day ahead, beside a seasonal-naive forecast (the same
# weekday a week before), with the seconds each model took to reach the
# plain LSTM's best validation loss, and writes results.csv (means and
# standard deviations over seeds), runs.csv (one row per model and seed)
# and two PNG plots: validation loss per epoch, and forecasts against
# actual sales over the test period.
#
# Run it with the README's first command (bash .ci/demo), or with
#   Rscript inst/examples/sales_forecast.R [--data retail] [--epochs 40]
#       [--patience 6] [--units 32] [--lookback 28] [--batch-size 32]
#       [--seed 1] [--seeds 1] [--output sales-demo]
# in an R where bnlstm is installed and reticulate finds pybnlstm.

library(bnlstm)

options_from_command_line <- function(args = commandArgs(TRUE)) {
  defaults <- list(data = "retail", epochs = 40, patience = 6, units = 32, lookback = 28,
                   batch_size = 32, seed = 1, seeds = 1,
                   output = "sales-demo")
  if (length(args) %% 2 != 0) {
    stop("Options come in pairs, such as --epochs 10; got: ",
         paste(args, collapse = " "), call. = FALSE)
  }
  for (i in seq_len(length(args) / 2) * 2 - 1) {
    name <- gsub("-", "_", sub("^--", "", args[i]))
    if (!name %in% names(defaults)) {
      stop("Unknown option ", args[i], "; known: ",
           paste0("--", gsub("_", "-", names(defaults)), collapse = ", "),
           call. = FALSE)
    }
    value <- args[i + 1]
    if (is.numeric(defaults[[name]])) {
      value <- suppressWarnings(as.integer(value))
      if (is.na(value) || value < 1) {
        stop("Option ", args[i], " takes a positive whole number, got ",
             args[i + 1], call. = FALSE)
      }
    }
    defaults[[name]] <- value
  }
  if (!defaults$data %in% c("retail", "synthetic")) {
    stop("Option --data takes retail or synthetic, got ", defaults$data,
         call. = FALSE)
  }
  defaults
}

opts <- options_from_command_line()
keras <- reticulate::import("keras")
dir.create(opts$output, showWarnings = FALSE, recursive = TRUE)

# Real sales of 20 products, one model for all, a week ahead. A day without
# a row sold nothing, at the last price paid.
retail_data <- function(lookback) {
  sales <- read_online_retail()
  list(
    sales = sales, shown = c("85123A", "22423", "84879"),
    about = paste("Online Retail II, 20 products, one global model, 7 days",
                  "ahead: training up to 2011-06, validation 2011-07 to",
                  "2011-09, test after."),
    data = prepare_forecast_data(
      sales, target = "units", lookback = lookback, horizon = 1:7,
      features = c("units", "price"), key = "product",
      train_end = "2011-06-30", validation_end = "2011-09-30",
      gaps = list(units = "zero", price = "previous")
    )
  )
}

# The bundled generated series, one day ahead.
synthetic_data <- function(lookback) {
  sales <- read_daily_sales()
  names(sales)[names(sales) == "sales"] <- "units"
  list(
    sales = sales, shown = NA,
    about = paste("Generated daily sales, 2008 to 2017, one day ahead:",
                  "training up to 2016, validation the first half of 2017,",
                  "test the second."),
    data = prepare_forecast_data(
      sales, target = "units", lookback = lookback,
      train_end = "2016-12-31", validation_end = "2017-06-30",
      features = c("units", "price", "promotion", "holiday"),
      known_ahead = c("price", "promotion", "holiday")
    )
  )
}

# Windows by day ahead, whatever the horizon.
as_matrix <- function(values) matrix(values, nrow = NROW(values))

set <- if (opts$data == "retail") retail_data(opts$lookback) else
  synthetic_data(opts$lookback)
data <- set$data
cat(set$about, "\n")
print(data)

# The three models differ only in their recurrent layers.
build_model <- function(kind, seed) {
  keras$utils$set_random_seed(as.integer(seed))
  model <- keras$Sequential(name = kind)
  model$add(keras$Input(shape = reticulate::tuple(
    as.list(as.integer(dim(data$train$x)[-1]))
  )))
  if (kind == "bn_lstm") {
    # The plain swap: layer_lstm() becomes layer_bn_lstm(), nothing else.
    model |>
      layer_bn_lstm(units = opts$units, return_sequences = TRUE,
                    dropout = 0.1) |>
      layer_bn_lstm(units = opts$units, dropout = 0.1)
  } else {
    model$add(keras$layers$LSTM(as.integer(opts$units),
                                return_sequences = TRUE, dropout = 0.1))
    if (kind == "lstm_batchnorm") {
      model$add(keras$layers$BatchNormalization())
    }
    model$add(keras$layers$LSTM(as.integer(opts$units), dropout = 0.1))
  }
  model$add(keras$layers$Dense(NCOL(data$train$y)))
  model$compile(optimizer = keras$optimizers$Adam(learning_rate = 1e-3),
                loss = "mse")
  model
}

train <- function(kind, label, seed) {
  cat("\n== ", label, ", seed ", seed, "\n", sep = "")
  model <- build_model(kind, seed)
  # Seconds from the start of fit() to the end of each epoch, validation
  # included: the wall clock a user waits for each validation loss.
  started <- Sys.time()
  elapsed <- numeric()
  clock <- keras$callbacks$LambdaCallback(on_epoch_end = function(...) {
    elapsed <<- c(elapsed, as.numeric(difftime(Sys.time(), started,
                                               units = "secs")))
  })
  callbacks <- list(clock, keras$callbacks$EarlyStopping(
    monitor = "val_loss", patience = as.integer(opts$patience),
    restore_best_weights = TRUE
  ))
  history <- model$fit(
    data$train$x, as_matrix(data$train$y),
    validation_data = reticulate::tuple(data$validation$x,
                                        as_matrix(data$validation$y)),
    epochs = as.integer(opts$epochs), batch_size = as.integer(opts$batch_size),
    callbacks = callbacks, verbose = 2L
  )
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  val_loss <- unlist(history$history$val_loss)
  forecast <- inverse_scale(
    data, model$predict(data$test$x, batch_size = 256L, verbose = 0L),
    key = data$test$key
  )
  list(label = label, forecast = as_matrix(forecast), val_loss = val_loss,
       elapsed = elapsed, seconds = seconds)
}

labels <- c(lstm = "LSTM", lstm_batchnorm = "LSTM + BatchNormalization",
            bn_lstm = "BN-LSTM (layer_bn_lstm)")
seeds <- opts$seed + seq_len(opts$seeds) - 1
runs <- lapply(seeds, function(seed) {
  lapply(stats::setNames(names(labels), names(labels)),
         function(kind) train(kind, labels[[kind]], seed))
})

actual <- as_matrix(inverse_scale(data, data$test$y, key = data$test$key))
# A forecaster to beat: each forecast day's units a week before (zero on a
# day without a row); a week back is known for every horizon up to seven.
seasonal_naive <- function(sales, data) {
  series <- if (is.null(data$key)) "" else sales[[data$key]]
  keys <- if (is.null(data$key)) "" else data$test$key
  sold <- sales[[data$target]][match(
    paste(rep(keys, length.out = length(data$test$dates)),
          format(data$test$dates - 7)),
    paste(series, format(sales$date))
  )]
  sold[is.na(sold)] <- 0
  as_matrix(array(sold, dim = c(NROW(actual), NCOL(actual))))
}
# RMSE and MAE over every window and day ahead, and MAE by day ahead.
test_errors <- function(forecast) {
  difference <- forecast - actual
  by_day <- colMeans(abs(difference))
  c(test_rmse = sqrt(mean(difference^2)), test_mae = mean(abs(difference)),
    stats::setNames(by_day, paste0("test_mae_day_", seq_along(by_day))))
}
# One row per model and seed. The target of the time column is the plain
# LSTM's best validation loss with the same seed.
per_seed <- do.call(rbind, lapply(seq_along(seeds), function(i) {
  target <- min(runs[[i]]$lstm$val_loss)
  do.call(rbind, lapply(names(labels), function(kind) {
    m <- runs[[i]][[kind]]
    reached <- which(m$val_loss <= target)[1]
    data.frame(model = m$label, seed = seeds[i],
               t(test_errors(m$forecast)),
               val_loss_epoch_5 = m$val_loss[5],
               best_epoch = which.min(m$val_loss),
               epochs_run = length(m$val_loss),
               best_val_loss = min(m$val_loss),
               seconds_per_epoch = m$seconds / length(m$val_loss),
               seconds_to_target = m$elapsed[reached])
  }))
}))
utils::write.csv(per_seed, file.path(opts$output, "runs.csv"),
                 row.names = FALSE)

tested <- grep("^test_", names(per_seed), value = TRUE)
measures <- c(tested, "val_loss_epoch_5", "best_epoch", "epochs_run",
              "best_val_loss", "seconds_per_epoch", "seconds_to_target")
# Means over seeds, and standard deviations (NA with one seed); the time to
# target is averaged over the seeds that reached it.
summarize <- function(rows) {
  means <- vapply(rows[measures], mean, 1, na.rm = TRUE)
  sds <- vapply(rows[c(tested, "best_val_loss")], stats::sd, 1)
  names(sds) <- paste0(names(sds), "_sd")
  means[is.nan(means)] <- NA
  data.frame(model = rows$model[1], t(means), t(sds),
             seeds = nrow(rows),
             seeds_reaching_target = sum(!is.na(rows$seconds_to_target)))
}
results <- do.call(rbind, lapply(labels, function(label) {
  summarize(per_seed[per_seed$model == label, ])
}))
naive_row <- results[1, ]
naive_row[] <- NA
naive_row$model <- "Same weekday last week"
naive_row[tested] <- as.list(test_errors(seasonal_naive(set$sales, data)))
results <- rbind(results, naive_row)
rownames(results) <- NULL
utils::write.csv(results, file.path(opts$output, "results.csv"),
                 row.names = FALSE)

# Formatted means, with their spread over several seeds.
with_sd <- function(column, digits, spread = TRUE) {
  mean <- results[[column]]
  sd <- if (spread && length(seeds) > 1) results[[paste0(column, "_sd")]] else
    NA
  sd <- rep_len(sd, length(mean))
  ifelse(is.na(mean), "", ifelse(is.na(sd), formatC(mean, digits, format = "f"),
    paste0(formatC(mean, digits, format = "f"), " ± ",
           formatC(sd, digits, format = "f"))))
}
spread <- if (length(seeds) > 1) {
  paste0(" ± sd over ", length(seeds), " seeds")
} else ""
cat("\nTest period ", format(min(data$test$dates)), " to ",
    format(max(data$test$dates)), " (", NROW(actual), " windows), ",
    "errors in units sold; mean", spread, ":\n", sep = "")
print(data.frame(
  model = results$model,
  test_rmse = with_sd("test_rmse", 2),
  test_mae = with_sd("test_mae", 2),
  val_loss_epoch_5 = with_sd("val_loss_epoch_5", 3, FALSE),
  best_epoch = with_sd("best_epoch", 1, FALSE),
  epochs_run = with_sd("epochs_run", 1, FALSE),
  best_val_loss = with_sd("best_val_loss", 3),
  s_per_epoch = with_sd("seconds_per_epoch", 2, FALSE),
  s_to_lstm_best = ifelse(
    is.na(results$seeds), "",
    paste0(with_sd("seconds_to_target", 1, FALSE), " (",
           results$seeds_reaching_target, "/", results$seeds, ")"))
), row.names = FALSE)
cat("\nMean absolute error by day ahead, units sold; mean", spread, ":\n",
    sep = "")
days <- grep("^test_mae_day_[0-9]+$", names(results), value = TRUE)
by_day <- data.frame(model = results$model,
                     lapply(stats::setNames(days, sub("test_mae_day_", "day ",
                                                      days)),
                            with_sd, digits = 1),
                     check.names = FALSE)
print(by_day, row.names = FALSE)

colors <- c(lstm = "#1b9e77", lstm_batchnorm = "#d95f02", bn_lstm = "#7570b3")

grDevices::png(file.path(opts$output, "validation_loss.png"), width = 900,
               height = 550, res = 110, type = "cairo")
curves <- unlist(lapply(runs, function(r) lapply(r, `[[`, "val_loss")),
                 recursive = FALSE)
graphics::plot(NA, xlim = c(1, max(lengths(curves))),
               ylim = range(unlist(curves)), log = "y", xlab = "epoch",
               ylab = "validation MSE (scaled units, log)",
               main = paste0("Validation loss per epoch (", length(seeds),
                             if (length(seeds) > 1) " seeds)" else " seed)"))
for (run in runs) {
  for (kind in names(labels)) {
    graphics::lines(run[[kind]]$val_loss, col = colors[kind], lwd = 2)
    best <- which.min(run[[kind]]$val_loss)
    graphics::points(best, run[[kind]]$val_loss[best], col = colors[kind],
                     pch = 19)
  }
}
graphics::legend("topright", bty = "n", lwd = 2, col = colors,
                 legend = labels)
invisible(grDevices::dev.off())

# The first seed's forecasts one day ahead against actual sales, one panel
# per series shown.
grDevices::png(file.path(opts$output, "test_forecast.png"), width = 1200,
               height = 220 + 280 * length(set$shown), res = 110,
               type = "cairo")
old <- graphics::par(mfrow = c(length(set$shown), 1), mar = c(2, 4, 2, 1),
                     oma = c(0, 0, 2, 0))
first_day <- if (is.null(dim(data$test$dates))) data$test$dates else
  data$test$dates[, 1]
for (series in set$shown) {
  rows <- if (is.na(series)) TRUE else data$test$key == series
  graphics::plot(first_day[rows], actual[rows, 1], type = "l",
                 col = "grey30", lwd = 2, xlab = "", ylab = "units sold",
                 main = if (is.na(series)) "" else paste("product", series))
  for (kind in names(labels)) {
    graphics::lines(first_day[rows], runs[[1]][[kind]]$forecast[rows, 1],
                    col = colors[kind], lwd = 1.3)
  }
  if (identical(series, set$shown[1])) {
    graphics::legend("topleft", bty = "n", lwd = c(2, 1.3, 1.3, 1.3),
                     col = c("grey30", colors), legend = c("actual", labels))
  }
}
graphics::mtext("Test period: forecast one day ahead vs actual sales",
                outer = TRUE, font = 2)
graphics::par(old)
invisible(grDevices::dev.off())

cat("\nWrote ", file.path(opts$output, "results.csv"), ", ",
    file.path(opts$output, "runs.csv"), ", ",
    file.path(opts$output, "validation_loss.png"), " and ",
    file.path(opts$output, "test_forecast.png"), "\n", sep = "")
