#' Recurrent batch-normalized LSTM layer
#'
#' A drop-in for `layer_lstm()` that batch-normalizes inside the recurrence
#' (Cooijmans et al., 2016). At each time step t, with gates in Keras' order
#' i, f, g, o:
#'
#' ```
#' z   = BN_t(x_t W; gamma_x) + BN_t(h_{t-1} U; gamma_h) + b
#' c_t = sigmoid(f) * c_{t-1} + sigmoid(i) * tanh(g)
#' h_t = sigmoid(o) * tanh(BN_t(c_t; gamma_c, beta_c))
#' ```
#'
#' In training, `BN_t` uses the batch moments of step t and the layer keeps
#' per-step population statistics; in inference it uses those, so a
#' prediction never depends on the rest of its batch and any batch size
#' works. Steps past `max_timesteps` reuse the last step's statistics.
#'
#' The statistics match the weights without any extra step: the layer keeps
#' its latest `statistics_sample` training sequences, and its first
#' inference after training (`predict()`, `evaluate()`, the validation of
#' `fit()`) re-estimates the statistics from them with the weights as they
#' are. Saving a model does so first too; the sample itself is never saved.
#' [recompute_statistics()] pools the statistics over a whole data set
#' instead.
#'
#' With a mask (`layer_masking()`, or an embedding with `mask_zero = TRUE`),
#' time steps count per sequence: the t-th unmasked step of each sequence
#' uses the statistics of step t, so padding (in front, as
#' `pad_sequences()` pads, or behind) never changes a prediction.
#'
#' Only the arguments you give reach Python; the others keep the Python
#' layer's defaults, shown here.
#'
#' @param object What to compose the layer with: missing or `NULL` to
#'   return the layer itself (for example to wrap it in
#'   `bidirectional()`), a Sequential model to add it to (the model is
#'   returned invisibly, so pipes chain), or a tensor to call it on (the
#'   functional API; the output is returned).
#' @param units Positive whole number, dimensionality of the output space.
#' @param activation Activation function. Default: `"tanh"`.
#' @param recurrent_activation Activation function of the gates. Default:
#'   `"sigmoid"`.
#' @param use_bias Whether the layer uses a bias vector (the only shift of
#'   the two gate normalizations). Default: `TRUE`.
#' @param kernel_initializer,recurrent_initializer,bias_initializer
#'   Initializers of the input kernel, the recurrent kernel and the bias.
#'   Defaults: `"glorot_uniform"`, `"orthogonal"`, `"zeros"`.
#' @param unit_forget_bias If `TRUE` (the default), add 1 to the bias of
#'   the forget gate at initialization.
#' @param gamma_initializer Initializer of the three gammas, or a number.
#'   Default: `0.1`, the paper's value (1 saturates the activation and
#'   makes gradients vanish over time).
#' @param beta_initializer Initializer of the cell-state shift. Default:
#'   `"zeros"`.
#' @param kernel_regularizer,recurrent_regularizer,bias_regularizer,activity_regularizer
#'   Regularizers. Default: `NULL`.
#' @param kernel_constraint,recurrent_constraint,bias_constraint
#'   Constraints. Default: `NULL`.
#' @param dropout,recurrent_dropout Fraction in \[0, 1) of the inputs and
#'   of the recurrent state to drop in training. Default: `0`.
#' @param seed Whole number, the random seed of dropout.
#' @param max_timesteps Positive whole number, the number of time steps
#'   that keep their own statistics. Default: the input's length.
#' @param momentum Momentum of the debiased moving averages, in \[0, 1\].
#'   Default: `0.5`.
#' @param epsilon Positive number added to the variances. Default:
#'   `0.001`.
#' @param input_statistics `"step"` or `"sequence"`: normalize the input
#'   term with statistics of its own time step, or with statistics shared
#'   by all time steps (the paper's option for sequences of varied length;
#'   the recurrent and cell terms keep per-step statistics). Default:
#'   `"step"`.
#' @param statistics_sample Whole number >= 0, how many of its latest
#'   training sequences the layer keeps to re-estimate its statistics
#'   before inference; `0` keeps none, and inference then uses moving
#'   averages of the training batches' statistics. Default: `512`.
#' @param synchronized If `TRUE`, the batch statistics span every replica
#'   of a TensorFlow distribution strategy, so that two replicas of 32
#'   normalize as one batch of 64. TensorFlow backend only. Default:
#'   `FALSE`.
#' @param return_sequences Return the whole output sequence rather than
#'   the last output. Default: `FALSE`.
#' @param return_state Also return the last states `h` and `c`. Default:
#'   `FALSE`.
#' @param go_backwards Process the sequence backwards. Default: `FALSE`.
#' @param stateful Carry the last states (and the time-step index) of each
#'   batch over to the next batch. Default: `FALSE`.
#' @param unroll Unroll the recurrence. Default: `FALSE`.
#' @param use_xla `"auto"`, `TRUE` or `FALSE`, as `use_cudnn` of
#'   `layer_lstm()`: whether the recurrence runs XLA-compiled, in training
#'   and in `predict()`. `"auto"` compiles it where that applies
#'   (TensorFlow backend, default activations, float32,
#'   `synchronized = FALSE`, not unrolled); `TRUE` is an error where it
#'   does not; `FALSE` runs the step-by-step loop, which compiles nothing
#'   and holds less memory in a short session. Default: `"auto"`.
#' @param input_shape Shape of one input sample, `c(timesteps, features)`,
#'   `NA` for an unknown dimension; for a first layer.
#' @param batch_size Fixed batch size (stateful models); needs
#'   `input_shape` and a Sequential `object`.
#' @param name Name of the layer.
#' @param ... Further keyword arguments for the Python layer, such as
#'   `dtype`, `trainable`, or `use_cudnn` (another name for `use_xla`, as
#'   code written for `layer_lstm()` may pass it).
#'
#' @return Depends on `object`: the layer, the model (invisibly), or the
#'   layer's output.
#' @seealso [recompute_statistics()]
#' @references Cooijmans, T. et al. (2016). Recurrent Batch Normalization.
#'   <https://arxiv.org/abs/1603.09025>
#' @examplesIf requireNamespace("keras3", quietly = TRUE) &&
#'   reticulate::py_module_available("keras")
#' library(keras3)
#' model <- keras_model_sequential(input_shape = c(10, 3)) |>
#'   layer_bn_lstm(units = 8, dropout = 0.1) |>
#'   layer_dense(units = 1)
#' model |> compile(optimizer = "adam", loss = "mse")
#' x <- array(runif(16 * 10 * 3), c(16, 10, 3))
#' y <- matrix(runif(16), 16, 1)
#' model |> fit(x, y, epochs = 1, verbose = 0)
#' predict(model, x, verbose = 0)
#' @examplesIf reticulate::py_module_available("keras")
#' # Without keras3, through reticulate:
#' keras <- reticulate::import("keras")
#' model <- keras$Sequential() |>
#'   layer_bn_lstm(units = 8, input_shape = c(10, 3), dropout = 0.1)
#' model$add(keras$layers$Dense(units = 1L))
#' model$compile(optimizer = "adam", loss = "mse")
#' x <- array(runif(16 * 10 * 3), c(16, 10, 3))
#' y <- matrix(runif(16), 16, 1)
#' history <- model$fit(x, y, epochs = 1L, verbose = 0L)
#' @export
layer_bn_lstm <- function(object, units, activation = "tanh",
                          recurrent_activation = "sigmoid", use_bias = TRUE,
                          kernel_initializer = "glorot_uniform",
                          recurrent_initializer = "orthogonal",
                          bias_initializer = "zeros",
                          unit_forget_bias = TRUE, gamma_initializer = 0.1,
                          beta_initializer = "zeros",
                          kernel_regularizer = NULL,
                          recurrent_regularizer = NULL,
                          bias_regularizer = NULL,
                          activity_regularizer = NULL,
                          kernel_constraint = NULL,
                          recurrent_constraint = NULL,
                          bias_constraint = NULL, dropout = 0,
                          recurrent_dropout = 0, seed = NULL,
                          max_timesteps = NULL, momentum = 0.5,
                          epsilon = 0.001, input_statistics = "step",
                          statistics_sample = 512, synchronized = FALSE,
                          return_sequences = FALSE,
                          return_state = FALSE, go_backwards = FALSE,
                          stateful = FALSE, unroll = FALSE,
                          use_xla = "auto", input_shape = NULL,
                          batch_size = NULL, name = NULL, ...) {
  if (missing(units)) {
    stop_argument("units", "a positive whole number", NULL)
  }
  given <- setdiff(names(match.call(expand.dots = FALSE))[-1],
                   c("object", "..."))
  args <- c(bn_lstm_arguments(mget(given, envir = environment())),
            list(...))
  compose_layer(object, args)
}

# Validates and converts the arguments the user gave, by name.
bn_lstm_arguments <- function(args) {
  checks <- list(
    units = check_count,
    dropout = check_fraction,
    recurrent_dropout = check_fraction,
    momentum = function(v, n) check_fraction(v, n, upper_inclusive = TRUE),
    epsilon = check_positive,
    max_timesteps = function(v, n) check_count(v, n, null_ok = TRUE),
    statistics_sample = function(v, n) check_count(v, n, zero_ok = TRUE),
    input_statistics = function(v, n) check_choice(v, n,
                                                   c("step", "sequence")),
    seed = check_seed,
    input_shape = check_shape,
    batch_size = check_count,
    name = check_string,
    gamma_initializer = function(v, n) check_spec(v, n, number_ok = TRUE),
    use_xla = check_auto_flag
  )
  flags <- c("use_bias", "unit_forget_bias", "synchronized",
             "return_sequences", "return_state", "go_backwards",
             "stateful", "unroll")
  for (name in names(args)) {
    check <- checks[[name]]
    if (name %in% flags) {
      check <- check_flag
    } else if (is.null(check)) {
      check <- check_spec
    }
    value <- check(args[[name]], name)
    # NULL must survive the assignment: it means Python's None.
    args[name] <- list(value)
  }
  args
}

# keras3's composition rule: the first argument decides what is returned.
compose_layer <- function(object, args) {
  input_shape <- args$input_shape
  batch_size <- args$batch_size
  args$batch_size <- NULL
  sequential <- !missing(object) && !is.null(object) &&
    is_sequential(object)
  if (sequential && length(object$`_layers`) > 0) {
    # A model that has its input already ignores these, as it does for
    # keras3's layer_lstm().
    input_shape <- args$input_shape <- batch_size <- NULL
  }
  if (!is.null(batch_size) && (!sequential || is.null(input_shape))) {
    stop("Received `batch_size` without `input_shape` and a Sequential ",
         "model as `object`: a fixed batch size belongs to the model's ",
         "input.", call. = FALSE)
  }
  if (sequential && !is.null(input_shape)) {
    # The model's input, added here so that Keras need not warn about
    # `input_shape` on a layer.
    args$input_shape <- NULL
    keras <- keras_python()
    input_args <- list(shape = input_shape)
    if (!is.null(batch_size)) input_args$batch_size <- batch_size
    object$add(do.call(keras$Input, input_args))
  }
  layer <- do.call(bnlstm_python()$BNLSTM, args)
  if (missing(object) || is.null(object)) {
    return(layer)
  }
  if (sequential) {
    object$add(layer)
    return(invisible(object))
  }
  layer(object)
}

is_sequential <- function(object) {
  inherits(object, "keras.src.models.sequential.Sequential") ||
    (inherits(object, "python.builtin.object") &&
       isTRUE(reticulate::import_builtins()$isinstance(
         object, keras_python()$Sequential
       )))
}
