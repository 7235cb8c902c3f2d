#' bnlstm: recurrent batch-normalized LSTM layers for keras3
#'
#' The recurrent batch-normalized LSTM of Cooijmans et al. (2016) as a
#' layer that pipes into keras3 models: swap [layer_bn_lstm()] in for
#' `layer_lstm()` and change nothing else. It normalizes the input and
#' recurrent contributions of every time step separately, and the cell
#' state before the output activation, with statistics kept per time step;
#' predictions never depend on the rest of the batch, and any batch size
#' works.
#'
#' The layer is implemented once, in the Python package `pybnlstm`, and
#' reached through reticulate. [install_bnlstm()] installs it; the R and
#' Python packages carry the same version number and bnlstm warns when
#' they differ.
#'
#' Main functions:
#' * [layer_bn_lstm()]: the layer.
#' * [recompute_statistics()] and [callback_bn_lstm_statistics()]:
#'   population statistics pooled over a whole data set (the layer keeps
#'   them exact for its weights without them).
#' * [install_bnlstm()]: the Python side.
#'
#' Saving: a model saved with `save_model()` or `model$save()` loads with
#' `load_model()` in R once bnlstm is loaded, and in Python after
#' `import pybnlstm`, with no custom objects.
#'
#' @references Cooijmans, T., Ballas, N., Laurent, C., Gulcehre, C. and
#'   Courville, A. (2016). Recurrent Batch Normalization.
#'   <https://arxiv.org/abs/1603.09025>
#' @keywords internal
"_PACKAGE"
