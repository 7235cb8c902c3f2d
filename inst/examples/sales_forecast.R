# Forecasting daily sales from R: a stacked LSTM, the same with
# BatchNormalization between its layers, and the same stack of BN-LSTM
# layers, trained on the same windows with the same early stopping and
# seeds. Prints a table of test errors in sales units and writes two PNG
# plots: validation loss per epoch, and forecasts against actual sales over
# the test period.
#
# Run it with the README's first command (bash .ci/demo), or with
#   Rscript inst/examples/sales_forecast.R [--epochs 40] [--patience 6]
#       [--units 32] [--lookback 28] [--batch-size 32] [--seed 1]
#       [--output sales-demo]
# in an R where bnlstm is installed and reticulate finds pybnlstm.

library(bnlstm)

options_from_command_line <- function(args = commandArgs(TRUE)) {
  defaults <- list(epochs = 40, patience = 6, units = 32, lookback = 28,
                   batch_size = 32, seed = 1, output = "sales-demo")
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
  defaults
}

opts <- options_from_command_line()
keras <- reticulate::import("keras")
dir.create(opts$output, showWarnings = FALSE, recursive = TRUE)

sales <- read_daily_sales()
data <- prepare_forecast_data(
  sales, target = "sales", lookback = opts$lookback,
  train_end = "2016-12-31", validation_end = "2017-06-30",
  features = c("sales", "price", "promotion", "holiday"),
  known_ahead = c("price", "promotion", "holiday")
)
cat("Daily sales, 2008 to 2017: training up to 2016, validation on the",
    "first half of 2017, test on the second.\n")
print(data)

# The three models differ only in their recurrent layers.
build_model <- function(kind) {
  keras$utils$set_random_seed(as.integer(opts$seed))
  model <- keras$Sequential(name = kind)
  model$add(keras$Input(shape = reticulate::tuple(
    as.list(as.integer(dim(data$train$x)[-1]))
  )))
  if (kind == "bn_lstm") {
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
  model$add(keras$layers$Dense(1L))
  model$compile(optimizer = keras$optimizers$Adam(learning_rate = 1e-3),
                loss = "mse")
  model
}

train <- function(kind, label) {
  cat("\n== ", label, "\n", sep = "")
  model <- build_model(kind)
  callbacks <- list(keras$callbacks$EarlyStopping(
    monitor = "val_loss", patience = as.integer(opts$patience),
    restore_best_weights = TRUE
  ))
  if (kind == "bn_lstm") {
    # After early stopping, so that the restored weights get their own
    # population statistics.
    callbacks <- c(callbacks, callback_bn_lstm_statistics(
      data$train$x, batch_size = opts$batch_size
    ))
  }
  started <- Sys.time()
  history <- model$fit(
    data$train$x, data$train$y,
    validation_data = reticulate::tuple(data$validation$x, data$validation$y),
    epochs = as.integer(opts$epochs), batch_size = as.integer(opts$batch_size),
    callbacks = callbacks, verbose = 2L
  )
  seconds <- as.numeric(difftime(Sys.time(), started, units = "secs"))
  val_loss <- unlist(history$history$val_loss)
  forecast <- as.vector(inverse_scale(
    data, model$predict(data$test$x, batch_size = 256L, verbose = 0L)
  ))
  list(label = label, forecast = forecast, val_loss = val_loss,
       loss = unlist(history$history$loss), seconds = seconds)
}

models <- list(
  lstm = train("lstm", "LSTM"),
  lstm_batchnorm = train("lstm_batchnorm", "LSTM + BatchNormalization"),
  bn_lstm = train("bn_lstm", "BN-LSTM (layer_bn_lstm)")
)

actual <- as.vector(inverse_scale(data, data$test$y))
# A forecaster to beat: the sales of the same weekday a week earlier.
naive <- sales$sales[match(data$test$dates - 7, sales$date)]
error_row <- function(label, forecast) {
  data.frame(model = label,
             test_rmse = sqrt(mean((forecast - actual)^2)),
             test_mae = mean(abs(forecast - actual)))
}
results <- do.call(rbind, c(
  lapply(models, function(m) {
    cbind(error_row(m$label, m$forecast),
          val_loss_epoch_5 = m$val_loss[5],
          best_epoch = which.min(m$val_loss),
          epochs_run = length(m$val_loss),
          best_val_loss = min(m$val_loss),
          seconds_per_epoch = m$seconds / length(m$val_loss))
  }),
  list(cbind(error_row("Same weekday last week", naive),
             val_loss_epoch_5 = NA, best_epoch = NA, epochs_run = NA,
             best_val_loss = NA,
             seconds_per_epoch = NA))
))
rownames(results) <- NULL
utils::write.csv(results, file.path(opts$output, "results.csv"),
                 row.names = FALSE)

cat("\nTest period ", format(min(data$test$dates)), " to ",
    format(max(data$test$dates)), " (", length(actual), " days), ",
    "errors in units sold:\n", sep = "")
shown <- results
rounded <- c("test_rmse", "test_mae", "val_loss_epoch_5", "best_val_loss",
             "seconds_per_epoch")
shown[rounded] <- lapply(shown[rounded], round, 3)
print(shown, row.names = FALSE, na.print = "")

colors <- c(lstm = "#1b9e77", lstm_batchnorm = "#d95f02", bn_lstm = "#7570b3")

grDevices::png(file.path(opts$output, "validation_loss.png"), width = 900,
               height = 550, res = 110, type = "cairo")
epochs <- max(vapply(models, function(m) length(m$val_loss), 1))
ylim <- range(unlist(lapply(models, `[[`, "val_loss")))
graphics::plot(NA, xlim = c(1, epochs), ylim = ylim, log = "y",
               xlab = "epoch", ylab = "validation MSE (scaled sales, log)",
               main = "Validation loss per epoch")
for (kind in names(models)) {
  graphics::lines(models[[kind]]$val_loss, col = colors[kind], lwd = 2)
  best <- which.min(models[[kind]]$val_loss)
  graphics::points(best, models[[kind]]$val_loss[best], col = colors[kind],
                   pch = 19)
}
graphics::legend("topright", bty = "n", lwd = 2, col = colors,
                 legend = vapply(models, `[[`, "", "label"))
invisible(grDevices::dev.off())

grDevices::png(file.path(opts$output, "test_forecast.png"), width = 1200,
               height = 600, res = 110, type = "cairo")
graphics::plot(data$test$dates, actual, type = "l", col = "grey30", lwd = 2,
               xlab = "", ylab = "units sold",
               main = "Test period: forecast one day ahead vs actual sales")
for (kind in names(models)) {
  graphics::lines(data$test$dates, models[[kind]]$forecast,
                  col = colors[kind], lwd = 1.3)
}
graphics::legend("topleft", bty = "n", lwd = c(2, 1.3, 1.3, 1.3),
                 col = c("grey30", colors),
                 legend = c("actual", vapply(models, `[[`, "", "label")))
invisible(grDevices::dev.off())

cat("\nWrote ", file.path(opts$output, "results.csv"), ", ",
    file.path(opts$output, "validation_loss.png"), " and ",
    file.path(opts$output, "test_forecast.png"), "\n", sep = "")
