"""An independent NumPy implementation of the recurrent batch-normalized LSTM
(Cooijmans et al., 2016), written from the paper's equations with explicit
loops over time steps and no code shared with pybnlstm."""

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class ReferenceBNLSTM:
    """Holds the weights and the population statistics; `run` processes a
    batch of sequences in float64."""

    def __init__(self, weights, *, momentum, epsilon, input_statistics="step",
                 activation=np.tanh, recurrent_activation=sigmoid):
        self.w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        self.momentum = momentum
        self.epsilon = epsilon
        self.input_statistics = input_statistics
        self.act = activation
        self.gate = recurrent_activation
        self.units = self.w["recurrent_kernel"].shape[0]
        self.max_timesteps = self.w["moving_mean_x"].shape[0]

    def bn(self, v, mean, var, gamma, beta=0.0):
        return gamma * (v - mean) / np.sqrt(var + self.epsilon) + beta

    def moments(self, v, alive):
        rows = v[alive]
        return rows.mean(axis=0), rows.var(axis=0)

    def update(self, t, moments):
        """The debiased moving-average update of row t:
        est += (1 - m) / (1 - m**n) * (batch - est) at the n-th update."""
        if t >= self.max_timesteps:
            return
        m = self.momentum
        n = self.w["moving_count"][t] + 1
        weight = 1.0 / n if m == 1 else (1 - m) / (1 - m ** n)
        for (part, stat), value in moments.items():
            row = self.w[f"moving_{stat}_{part}"][t]
            row += weight * (value - row)
        self.w["moving_count"][t] = n

    def fill_unvisited(self):
        """Rows never updated copy the nearest updated row before them."""
        last = None
        for t in range(self.max_timesteps):
            if self.w["moving_count"][t] > 0:
                last = t
            elif last is not None:
                for key in self.w:
                    if key.startswith("moving_") and key != "moving_count":
                        self.w[key][t] = self.w[key][last]

    def stats(self, part, t):
        row = min(t, self.max_timesteps - 1)
        return (self.w[f"moving_mean_{part}"][row],
                self.w[f"moving_variance_{part}"][row])

    def run(self, x, training, mask=None, h0=None, c0=None, offset=0,
            go_backwards=False, input_mask=None, recurrent_mask=None):
        """Returns (outputs (batch, time, units), h, c).

        Time steps count per sequence: the k-th unmasked step of each
        sequence (in processing order, reversed with `go_backwards`) uses
        statistics row `offset + k`, and in training the moments of row k
        pool the k-th unmasked step of every sequence that has one. A
        masked position outputs the output of the last unmasked step before
        it, or zeros before the first; `go_backwards` returns outputs in
        processing order, as Keras does.

        In training mode the population statistics (and their update
        counts) are updated in place.
        `input_mask`/`recurrent_mask` are dropout masks (already scaled)
        applied to x_t and to h_{t-1}.
        """
        x = np.asarray(x, dtype=np.float64)
        batch, length, _ = x.shape
        u = self.units
        if mask is None:
            mask = np.ones((batch, length), dtype=bool)
        mask = np.asarray(mask, dtype=bool)
        if go_backwards:
            x, mask = x[:, ::-1], mask[:, ::-1]
        real = [np.flatnonzero(mask[s]) for s in range(batch)]
        lengths = np.array([len(r) for r in real])
        h = np.zeros((batch, u)) if h0 is None else np.array(h0, np.float64)
        c = np.zeros((batch, u)) if c0 is None else np.array(c0, np.float64)
        W, U = self.w["kernel"], self.w["recurrent_kernel"]
        b = self.w.get("bias", np.zeros(4 * u))
        if input_mask is not None:
            x = x * input_mask[:, None, :]
        shared = None
        if self.input_statistics == "sequence":
            every_real_step = np.concatenate(
                [x[s, real[s]] for s in range(batch)]) @ W
            if training and len(every_real_step):
                shared = (every_real_step.mean(axis=0),
                          every_real_step.var(axis=0))
            else:
                shared = self.stats("x", 0)
        after_step = []  # h after the k-th real step of each sequence
        for k in range(length):
            t = offset + k
            alive = lengths > k
            xt = np.stack([x[s, real[s][k]] if alive[s] else x[s, 0]
                           for s in range(batch)])
            h_in = h if recurrent_mask is None else h * recurrent_mask
            wx, uh = xt @ W, h_in @ U
            if training and alive.any():
                mx, vx = self.moments(wx, alive) if shared is None else shared
                mh, vh = self.moments(uh, alive)
            else:
                (mx, vx), (mh, vh) = (
                    self.stats("x", t) if shared is None else shared,
                    self.stats("h", t))
            z = (self.bn(wx, mx, vx, self.w["gamma_x"])
                 + self.bn(uh, mh, vh, self.w["gamma_h"]) + b)
            i, f, g, o = np.split(z, 4, axis=1)
            c_new = self.gate(f) * c + self.gate(i) * self.act(g)
            if training and alive.any():
                mc, vc = self.moments(c_new, alive)
                self.update(t, {("x", "mean"): mx, ("x", "variance"): vx,
                                ("h", "mean"): mh, ("h", "variance"): vh,
                                ("c", "mean"): mc, ("c", "variance"): vc})
            else:
                mc, vc = self.stats("c", t)
            h_new = self.gate(o) * self.act(
                self.bn(c_new, mc, vc, self.w["gamma_c"], self.w["beta_c"]))
            keep = alive[:, None]
            h = np.where(keep, h_new, h)
            c = np.where(keep, c_new, c)
            after_step.append(h)
        outputs = np.zeros((batch, length, u))
        for s in range(batch):
            seen = 0
            for p in range(length):
                seen += mask[s, p]
                if seen:
                    outputs[s, p] = after_step[seen - 1][s]
        if training:
            self.fill_unvisited()
        return outputs, h, c


def reference_for(layer, **kwargs):
    """A reference with the weights and hyperparameters of a built layer
    (a BNLSTM, or a keras.layers.RNN around a BNLSTMCell)."""
    cell = layer.cell
    return ReferenceBNLSTM(weights_of(layer), momentum=cell.momentum,
                           epsilon=cell.epsilon,
                           input_statistics=cell.input_statistics, **kwargs)


def weights_of(layer):
    """The cell's weights (the equations' weights and statistics) by their
    public names, as float64 arrays."""
    return {v.name: np.array(v.numpy(), dtype=np.float64)
            for v in layer.cell.weights}
