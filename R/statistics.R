#' Re-estimate the population statistics of BN-LSTM layers
#'
#' Runs `model` over `x` and sets the per-time-step population statistics
#' of every [layer_bn_lstm()] in it (nested models and bidirectional
#' wrappers included) to the batch statistics pooled over all of `x` (for
#' shuffled batches, the average Cooijmans et al. (2016) use; the variance
#' adds the spread of the batch means, so the result does not depend on the
#' order of the data). Trainable weights are left untouched.
#'
#' Not needed for exact inference: after training, each layer re-estimates
#' its statistics from a sample of its latest training sequences at its
#' first inference call. This pools them over a whole data set instead, for
#' example one other than the training data.
#'
#' @param model A built Keras model with BN-LSTM layers.
#' @param x The training inputs: an R array (samples, timesteps,
#'   features), a list `list(x, y)`, or a Python dataset or generator.
#' @param batch_size Batch size for arrays; use the training batch size.
#'   Default: `32`.
#' @param steps Number of batches to use, or `NULL` for all.
#' @param verbose `0` for silence, `1` for a progress bar.
#' @param shuffle Draw the batches of an array in a fixed random order, as
#'   `fit()` draws them, rather than in the order of its rows. Default:
#'   `TRUE`. Python datasets and generators are read as they come.
#'
#' @return A named list, one element per BN-LSTM layer: the batches
#'   averaged, the time-step rows re-estimated and the largest change of
#'   each statistic.
#' @seealso [callback_bn_lstm_statistics()]
#' @examplesIf reticulate::py_module_available("keras")
#' keras <- reticulate::import("keras")
#' x <- array(runif(4 * 5 * 2), c(4, 5, 2))
#' model <- keras$Sequential() |> layer_bn_lstm(units = 3, input_shape = c(5, 2))
#' changes <- recompute_statistics(model, x, batch_size = 2, verbose = 0)
#' @export
recompute_statistics <- function(model, x, batch_size = 32, steps = NULL,
                                 verbose = 1, shuffle = TRUE) {
  if (!inherits(model, "python.builtin.object")) {
    stop_argument("model", "a Keras model", model)
  }
  args <- statistics_arguments(x, batch_size, steps, verbose, shuffle)
  do.call(bnlstm_python()$recompute_statistics, c(list(model), args))
}

#' Callback that re-estimates BN-LSTM population statistics over a data set
#' during `fit()`
#'
#' Before each validation pass and at the end of training, re-estimates the
#' population statistics over `x` with [recompute_statistics()]. Without it,
#' each layer already re-estimates them from a sample of its latest
#' training sequences before validation and prediction; this pools them
#' over all of `x` instead. Place it after an early-stopping callback that
#' restores the best weights.
#'
#' @inheritParams recompute_statistics
#' @param before_validation Also re-estimate before each validation pass.
#'   Default: `TRUE`.
#' @param verbose `0` (the default) for silence, `1` for a progress bar.
#'
#' @return A Keras callback, for `fit(callbacks = list(...))`.
#' @examplesIf reticulate::py_module_available("keras")
#' x <- array(runif(4 * 5 * 2), c(4, 5, 2))
#' callback <- callback_bn_lstm_statistics(x, batch_size = 2)
#' @export
callback_bn_lstm_statistics <- function(x, batch_size = 32, steps = NULL,
                                        before_validation = TRUE,
                                        verbose = 0, shuffle = TRUE) {
  args <- statistics_arguments(x, batch_size, steps, verbose, shuffle)
  args$before_validation <- check_flag(before_validation,
                                       "before_validation")
  do.call(bnlstm_python()$RecomputeStatistics, args)
}

statistics_arguments <- function(x, batch_size, steps, verbose, shuffle) {
  if (is.data.frame(x)) {
    stop_argument("x", paste("an array of windows (samples, timesteps,",
                             "features), list(x, y), or a Python dataset,",
                             "as prepare_forecast_data() makes them"), x)
  }
  if (is.list(x) && !inherits(x, "python.builtin.object")) {
    x <- x[[1]]
  }
  if (is.array(x)) {
    storage.mode(x) <- "double"
  } else if (!inherits(x, "python.builtin.object")) {
    stop_argument("x", "an array, list(x, y), or a Python dataset", x)
  }
  list(
    data = x,
    batch_size = check_count(batch_size, "batch_size"),
    steps = check_count(steps, "steps", null_ok = TRUE),
    verbose = check_verbose(verbose),
    shuffle = check_flag(shuffle, "shuffle")
  )
}

check_verbose <- function(value) {
  if (!is_whole_number(value) || !value %in% c(0, 1)) {
    stop_argument("verbose", "0 or 1", value)
  }
  as.integer(value)
}
