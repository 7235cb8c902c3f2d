"""Batch normalization by a batch's own moments, as every normalization of
a BN-LSTM step in training uses it: the moments (masked samples weighted
out, optionally summed across replicas), the moments of a projection
`x W` without forming it, and the normalization with its gradient written
out."""

from keras import ops

from pybnlstm import _replicas


def _weighted_mean(x, weights, synchronized):
    """The first pass of the moments: `(weights, mean, count)` over axis
    0, with `weights` ones where none were given."""
    if weights is None:
        weights = ops.ones_like(x[..., :1])
    weights = ops.cast(weights, "float32")
    total = ops.concatenate(
        [ops.sum(weights * x, axis=0), ops.sum(weights, axis=0)], axis=-1
    )
    if synchronized:
        total = _replicas.replica_sum(total)
    # An all-masked step yields zeros rather than NaN; its moments are never
    # used for the population statistics (see `BNLSTM`).
    count = ops.maximum(total[..., -1:], 1.0)
    return weights, total[..., :-1] / count, count


def _summed(value, synchronized):
    return _replicas.replica_sum(value) if synchronized else value


def batch_moments(x, weights=None, synchronized=False):
    """Per-feature mean and biased variance over axis 0, in float32, and
    the centred values they were computed from.

    Args:
        x: tensor whose axis 0 is the batch.
        weights: optional 0/1 tensor broadcastable to `x` (masked samples
            have weight 0); those samples do not enter the moments.
        synchronized: if `True`, the moments span the samples of every
            replica of the current `tf.distribute` strategy.

    Returns:
        `(mean, variance, centred)`: the moments, each shaped like `x`
        without axis 0, and `x - mean`, shaped like `x`.
    """
    x = ops.cast(x, "float32")
    if weights is None and not synchronized:
        mean = ops.mean(x, axis=0)
        centred = x - mean
        return mean, ops.mean(ops.square(centred), axis=0), centred
    weights, mean, count = _weighted_mean(x, weights, synchronized)
    # A second pass over the centred values, so that a synchronized
    # variance is as exact as a local one (E[x^2] - E[x]^2 is not).
    centred = x - mean
    squares = ops.sum(weights * ops.square(centred), axis=0)
    return mean, _summed(squares, synchronized) / count, centred


def projected_moments(x, kernel, weights=None, synchronized=False):
    """Per-feature mean and variance over axis 0 of `x @ kernel`, in
    float32, without forming the projection.

    `mean(x W) = mean(x) W` and `var(x W)_j = W_j' Cov(x) W_j`, so only the
    `(features, features)` covariance of the inputs is needed: far less
    memory traffic than `x W` itself, which is `4 * units` wide.

    The gradient is written out (autodiff where the moments span
    replicas, to carry the all-reduces back): autodiff of the covariance
    and the quadratic form took 1.3 to 1.6 times as long.

    Args:
        x: tensor `(batch, ..., features)`.
        kernel: `(features, width)` matrix.
        weights: optional 0/1 tensor `(batch, ..., 1)`; samples of weight 0
            do not enter the moments.
        synchronized: if `True`, the moments span every replica of the
            current `tf.distribute` strategy.

    Returns:
        `(mean, variance)`, each shaped `x.shape[1:-1] + (width,)`.
    """
    x = ops.cast(x, "float32")
    kernel = ops.convert_to_tensor(ops.cast(kernel, "float32"))
    if synchronized:
        mean, variance, _ = _projection_moments(x, kernel, weights, True)
        return mean, ops.maximum(variance, 0.0)

    @ops.custom_gradient
    def moments(x, kernel):
        mean, variance, (w, mean_x, count, centred, spread) = (
            _projection_moments(x, kernel, weights, False)
        )

        def grad(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            d_mean, d_variance = ops.split(upstream, 2, axis=-1)
            d_variance = d_variance * ops.cast(variance >= 0, "float32")
            features, width = kernel.shape
            # d var_j / d W = 2 Cov W_j; d var_j / d Cov = W_j W_j'. The
            # centring adds nothing: the weighted centred values sum to 0.
            d_kernel = ops.matmul(
                ops.transpose(ops.reshape(mean_x, (-1, features))),
                ops.reshape(d_mean, (-1, width)),
            ) + 2.0 * ops.sum(ops.reshape(
                spread * d_variance[..., None, :], (-1, features, width)
            ), axis=0)
            d_covariance = ops.matmul(
                kernel * d_variance[..., None, :], ops.transpose(kernel)
            )
            d_mean_x = ops.reshape(
                ops.matmul(ops.reshape(d_mean, (-1, width)),
                           ops.transpose(kernel)),
                ops.shape(mean_x),
            )
            d_x = w / count * (d_mean_x + 2.0 * ops.einsum(
                "b...f,...fg->b...g", centred, d_covariance
            ))
            return d_x, d_kernel

        # One output: Keras' PyTorch backend takes one upstream gradient.
        return ops.concatenate([mean, ops.maximum(variance, 0.0)], -1), grad

    return tuple(ops.split(moments(x, kernel), 2, axis=-1))


def _projection_moments(x, kernel, weights, synchronized):
    """`projected_moments` before the variance is clipped at 0 (the
    quadratic form can round a little below zero), and what its gradient
    reads: `(mean, variance, (weights, mean of x, count,
    centred x, Cov(x) W))`."""
    weights, mean, count = _weighted_mean(x, weights, synchronized)
    centred = x - mean
    # Centred before the product, as in `batch_moments`.
    covariance = ops.einsum("b...f,b...g->...fg", weights * centred, centred)
    covariance = _summed(covariance, synchronized) / count[..., None]
    spread = ops.matmul(covariance, kernel)
    variance = ops.sum(spread * kernel, axis=-2)
    return (ops.matmul(mean, kernel), variance,
            (weights, mean, count, centred, spread))


def batch_normalizer(epsilon, masked):
    """`normalize(v, centred, variance, gamma, beta[, weights])`: the batch
    normalization `centred / sqrt(variance + epsilon) * gamma + beta` of
    `v` by its own batch moments, with the gradient written out.

    `centred` and `variance` must come from `batch_moments(v)` under
    `stop_gradient`: the gradient of `v` includes the terms through them.
    `beta` may be a per-step shift that holds more than a beta (the gate
    normalization folds the bias and the input's shift into it). With
    `masked`, `weights` is the `(batch, 1)` 0/1 tensor the moments were
    taken with. The result has `v`'s dtype; the arithmetic is float32.

    Autodiff of the moments' graph takes many more passes over each
    `(batch, features)` tensor per time step, and on a CPU those passes,
    not the matrix products, are what a step costs over an LSTM's. Here
    the backward pass (`normalization_backward`) reads the normalized
    values and the upstream gradient twice each: two sums, then one scale
    and shift.
    """

    def forward(v, centred, variance, gamma, beta, weights=None):
        inv = ops.rsqrt(variance + epsilon)
        y = ops.cast(ops.add(centred * (gamma * inv), beta), v.dtype)

        def grad(*args, upstream=None):
            dy = ops.cast(args[0] if upstream is None else upstream, "float32")
            w = None
            if weights is None:
                count = centred.shape[0]
                if count is None:
                    count = ops.cast(ops.shape(centred)[0], "float32")
            else:
                w = ops.cast(weights, "float32")
                count = ops.maximum(ops.sum(w, axis=0), 1.0)
            dv, total, projected = normalization_backward(
                dy, centred * inv, gamma, inv, w, count
            )
            grads = [
                ops.cast(dv, v.dtype),
                ops.zeros_like(centred),
                ops.zeros_like(variance),
                projected,
                total,
            ]
            if weights is not None:
                grads.append(ops.zeros_like(weights))
            return tuple(grads)

        return y, grad

    if masked:
        return ops.custom_gradient(forward)
    return ops.custom_gradient(
        lambda v, centred, variance, gamma, beta: forward(
            v, centred, variance, gamma, beta
        )
    )


def normalization_backward(dy, normalized, gamma, inv, weights, count):
    """The gradient of `gamma * normalized + beta` with respect to the input
    that was normalized by its own batch moments (`normalized = (v - mean)
    * inv`); and the batch sums `sum dy` and `sum dy * normalized`, the
    gradients of the shift and of gamma. The one backward of every
    normalization: `batch_normalizer`'s and the compiled training loop's.

    Every row's output depends on the moments; only weighted rows enter
    them: with `w` a row's weight (`weights`, or `None` for all ones) and
    `n` the weighted `count`,
    `dv = gamma inv (dy - w (sum dy + normalized sum dy normalized) / n)`.
    """
    total = ops.sum(dy, axis=0)
    projected = ops.sum(dy * normalized, axis=0)
    through_moments = (total + normalized * projected) / count
    if weights is not None:
        through_moments = through_moments * weights
    return gamma * inv * (dy - through_moments), total, projected
