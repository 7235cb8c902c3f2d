# Forecasting daily sales from R: a stacked LSTM, the same with
# BatchNormalization between its layers, and the same stack of BN-LSTM
# layers, trained on the same windows with the same early stopping, for
# one seed or several (--seeds). Prints a table of test errors in sales
# units, with the seconds each model took to reach the plain LSTM's best
# validation loss, and writes results.csv (means and standard deviations
# over seeds), runs.csv (one row per model and seed) and two PNG plots:
# validation loss per epoch, and forecasts against actual sales over the
# test period.
#
# Run it with the README's first command (bash .ci/demo), or with
#   Rscript inst/examples/sales_forecast.R [--epochs 40] [--patience 6]
#       [--units 32] [--lookback 28] [--batch-size 32] [--seed 1]
#       [--seeds 1] [--output sales-demo]
# in an R where bnlstm is installed and reticulate finds pybnlstm.

library(bnlstm)

options_from_command_line <- function(args = commandArgs(TRUE)) {
  defaults <- list(epochs = 40, patience = 6, units = 32, lookback = 28,
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
  model$add(keras$layers$Dense(1L))
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
       elapsed = elapsed, seconds = seconds)
}

labels <- c(lstm = "LSTM", lstm_batchnorm = "LSTM + BatchNormalization",
            bn_lstm = "BN-LSTM (layer_bn_lstm)")
seeds <- opts$seed + seq_len(opts$seeds) - 1
runs <- lapply(seeds, function(seed) {
  lapply(stats::setNames(names(labels), names(labels)),
         function(kind) train(kind, labels[[kind]], seed))
})

actual <- as.vector(inverse_scale(data, data$test$y))
# A forecaster to beat: the sales of the same weekday a week earlier.
naive <- sales$sales[match(data$test$dates - 7, sales$date)]
test_errors <- function(forecast) {
  c(test_rmse = sqrt(mean((forecast - actual)^2)),
    test_mae = mean(abs(forecast - actual)))
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

measures <- c("test_rmse", "test_mae", "val_loss_epoch_5", "best_epoch",
              "epochs_run", "best_val_loss", "seconds_per_epoch",
              "seconds_to_target")
# Means over seeds, and standard deviations (NA with one seed); the time to
# target is averaged over the seeds that reached it.
summarize <- function(rows) {
  means <- vapply(rows[measures], mean, 1, na.rm = TRUE)
  sds <- vapply(rows[c("test_rmse", "test_mae", "best_val_loss")],
                stats::sd, 1)
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
naive_row[c("test_rmse", "test_mae")] <- test_errors(naive)
results <- rbind(results, naive_row)
rownames(results) <- NULL
utils::write.csv(results, file.path(opts$output, "results.csv"),
                 row.names = FALSE)

cat("\nTest period ", format(min(data$test$dates)), " to ",
    format(max(data$test$dates)), " (", length(actual), " days), ",
    "errors in units sold; mean", if (length(seeds) > 1)
      paste0(" ± sd over ", length(seeds), " seeds") else "",
    ":\n", sep = "")
with_sd <- function(mean, sd, digits) {
  sd <- rep_len(sd, length(mean))
  ifelse(is.na(mean), "", ifelse(is.na(sd), formatC(mean, digits, format = "f"),
    paste0(formatC(mean, digits, format = "f"), " ± ",
           formatC(sd, digits, format = "f"))))
}
shown <- data.frame(
  model = results$model,
  test_rmse = with_sd(results$test_rmse, results$test_rmse_sd, 2),
  test_mae = with_sd(results$test_mae, results$test_mae_sd, 2),
  val_loss_epoch_5 = with_sd(results$val_loss_epoch_5, NA, 3),
  best_epoch = with_sd(results$best_epoch, NA, 1),
  epochs_run = with_sd(results$epochs_run, NA, 1),
  best_val_loss = with_sd(results$best_val_loss, results$best_val_loss_sd, 3),
  s_per_epoch = with_sd(results$seconds_per_epoch, NA, 2),
  s_to_lstm_best = ifelse(
    is.na(results$seeds), "",
    paste0(with_sd(results$seconds_to_target, NA, 1), " (",
           results$seeds_reaching_target, "/", results$seeds, ")"))
)
print(shown, row.names = FALSE)

colors <- c(lstm = "#1b9e77", lstm_batchnorm = "#d95f02", bn_lstm = "#7570b3")

grDevices::png(file.path(opts$output, "validation_loss.png"), width = 900,
               height = 550, res = 110, type = "cairo")
curves <- unlist(lapply(runs, function(r) lapply(r, `[[`, "val_loss")),
                 recursive = FALSE)
graphics::plot(NA, xlim = c(1, max(lengths(curves))),
               ylim = range(unlist(curves)), log = "y", xlab = "epoch",
               ylab = "validation MSE (scaled sales, log)",
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

grDevices::png(file.path(opts$output, "test_forecast.png"), width = 1200,
               height = 600, res = 110, type = "cairo")
graphics::plot(data$test$dates, actual, type = "l", col = "grey30", lwd = 2,
               xlab = "", ylab = "units sold",
               main = "Test period: forecast one day ahead vs actual sales")
# The forecasts of the first seed.
for (kind in names(labels)) {
  graphics::lines(data$test$dates, runs[[1]][[kind]]$forecast,
                  col = colors[kind], lwd = 1.3)
}
graphics::legend("topleft", bty = "n", lwd = c(2, 1.3, 1.3, 1.3),
                 col = c("grey30", colors),
                 legend = c("actual", labels))
invisible(grDevices::dev.off())

cat("\nWrote ", file.path(opts$output, "results.csv"), ", ",
    file.path(opts$output, "runs.csv"), ", ",
    file.path(opts$output, "validation_loss.png"), " and ",
    file.path(opts$output, "test_forecast.png"), "\n", sep = "")
