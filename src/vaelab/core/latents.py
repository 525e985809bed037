"""Latent models beyond one diagonal Gaussian layer (``keras.ops``: every backend).

:class:`LatentStack` takes the place of the lab's :class:`~vaelab.core.layers.Sampling`
layer between the encoder (``x → [mean, log_var]`` of the first layer) and the decoder
(``z₁ → x̂``). It holds a hierarchy of stochastic layers, or one layer with a flow, a
VampPrior or both:

- **two or more stochastic layers** (Burda et al. 2015, section 5): inference bottom-up,
  ``q(z₁|x) q(z₂|z₁) …``, each upper posterior a diagonal Gaussian computed from the layer
  below by an MLP; generation top-down, ``p(z_L) … p(z₁|z₂) p(x|z₁)``, with ``p(z_L)``
  the standard normal and each ``p(z_i|z_{i+1})`` a diagonal Gaussian computed by an MLP
  of the mirrored widths;
- **an inverse autoregressive flow** on the posterior (Kingma et al. 2016): ``z₀ ~ q(z|x)``,
  then per step ``[m, s] = MADE(z)``, ``σ = sigmoid(s + 1)``, ``z ← σ ⊙ z + (1 − σ) ⊙ m``,
  and ``log q(z_T|x) = log q(z₀|x) − Σ_t Σ_d log σ_{t,d}``; the order of the dimensions
  is reversed between steps (and z_T put back in the encoder's order). With a context
  (Kingma et al.'s h, an encoder output given to every step), the first hidden layer of
  each MADE also sees ``[μ, log σ²]``, the encoder's own outputs for x, through an
  unmasked dense layer (inputs of degree 0): the flow then depends on x and not only on
  z₀, and is still autoregressive in z (the context is fixed for a given x);
- **the VampPrior** (Tomczak & Welling 2018): ``p(z) = (1/K) Σ_k q(z|u_k)``, the encoder's
  Gaussian posteriors at K learned pseudo-inputs (:class:`PseudoInputs`; with a flow, the
  Gaussians before it), given to the layer as its third and fourth inputs
  ``[prior_means (K, L), prior_log_vars (K, L)]``.

Each stochastic layer ``i`` contributes ``log p_i − log q_i`` to a log importance weight
(:meth:`LatentStack.transform`). In the ELBO (the layer's ``call``) the KL term of layer
``i`` is added as its own loss, in this order:

- in closed form, ``KL(q(z_L|z_{L−1}) ‖ N(0, I))``, for the top layer of a hierarchy
  (given the sample of the layer below);
- by the one-sample Monte Carlo estimate ``log q_i(z_i) − log p_i(z_i)`` wherever no
  closed form exists: the lower layers of a hierarchy (their prior depends on the layer
  above, which was drawn from them), the flow's posterior, the VampPrior's mixture.

Free bits (``max(λ, KL_d)`` per dimension) need a KL per dimension: a hierarchy's
layers have one (diagonal Gaussians both sides); a flow or a mixture prior has not, and
:class:`~vaelab.core.config.TrainConfig` refuses the combination.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from vaelab.core.divergences import kl_standard_normal_elementwise
from vaelab.core.layers import OurDense, Sampling
from vaelab.core.likelihoods import LOG_2PI

FLOW_GATE_SHIFT = 1.0  # σ = sigmoid(s + 1): each step starts near z ← 0.73 z + 0.27 m


def log_normal(z, mean, log_var):
    """Element-wise ``log N(z; mean, exp(log_var))``."""
    return -0.5 * (LOG_2PI + log_var + ops.square(z - mean) * ops.exp(-log_var))


def log_standard_normal(z):
    """Element-wise ``log N(z; 0, 1)``."""
    return -0.5 * (LOG_2PI + ops.square(z))


def log_mixture(z, means, log_vars):
    """``log (1/K) Σ_k N(z; means[k], diag exp(log_vars[k]))``: ``z (..., L)`` → ``(...)``.

    The squared distances are formed from the differences ``z − μ_k`` (an ``(N, K, L)``
    array): expanding the square into matrix products cancels badly in float32 once the
    components are narrow (σ² ≈ 1e-3 already costs 0.01 nats). Evaluation keeps its
    chunks small enough for that array (:func:`vaelab.analysis.bounds.iwae_nll`).
    """
    shape = ops.shape(z)
    flat = ops.reshape(z, (-1, 1, shape[-1]))                               # (N, 1, L)
    square = ops.sum(ops.square(flat - means) * ops.exp(-log_vars), -1)      # (N, K)
    log_components = -0.5 * (shape[-1] * LOG_2PI + ops.sum(log_vars, -1) + square)
    k = ops.shape(means)[0]
    log_p = ops.logsumexp(log_components, axis=-1) - ops.log(ops.cast(k, z.dtype))
    return ops.reshape(log_p, shape[:-1])


def made_degrees(latent: int, width: int) -> np.ndarray:
    """The MADE degrees (Germain et al. 2015) of a hidden layer of ``width`` units for
    ``latent`` inputs of degrees 1 … latent: 1 … latent − 1, repeated (1 when latent = 1)."""
    return np.arange(width) % max(latent - 1, 1) + 1


@keras.saving.register_keras_serializable(package="vaelab")
class MaskedDense(keras.layers.Layer):
    """A dense layer whose kernel is multiplied by MADE's fixed 0/1 mask.

    Unit ``j`` (degree ``out_degrees[j]``) sees input ``i`` (degree ``in_degrees[i]``)
    when ``out_degrees[j] ≥ in_degrees[i]``, or ``>`` with ``strict`` (an output layer:
    output d then depends on inputs 1 … d − 1 only).

    Args:
        in_degrees, out_degrees: lists of positive ints.
        strict: whether a unit sees only inputs of lower degree.
        activation: Keras activation name; ``None`` for a linear layer.
    """

    def __init__(self, in_degrees, out_degrees, strict=False, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.in_degrees = [int(d) for d in in_degrees]
        self.out_degrees = [int(d) for d in out_degrees]
        self.strict = bool(strict)
        self.activation = keras.activations.get(activation)
        inputs = np.asarray(self.in_degrees)[:, None]
        outputs = np.asarray(self.out_degrees)[None, :]
        self.mask = ((outputs > inputs) if self.strict else (outputs >= inputs)).astype("float32")

    def build(self, input_shape):
        if input_shape[-1] != len(self.in_degrees):
            raise ValueError(f"MaskedDense {self.name!r} was given {len(self.in_degrees)} input "
                             f"degrees for inputs of width {input_shape[-1]}")
        self.kernel = self.add_weight(name="kernel", shape=self.mask.shape,
                                      initializer="glorot_normal")
        self.bias = self.add_weight(name="bias", shape=(len(self.out_degrees),),
                                    initializer="zeros")

    def call(self, inputs):
        kernel = self.kernel * ops.convert_to_tensor(self.mask, dtype=self.kernel.dtype)
        return self.activation(ops.matmul(inputs, kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], len(self.out_degrees))

    def get_config(self):
        return {**super().get_config(), "in_degrees": self.in_degrees,
                "out_degrees": self.out_degrees, "strict": self.strict,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package="vaelab")
class PseudoInputs(keras.layers.Layer):
    """The VampPrior's K pseudo-inputs, ``clip(W, 0, 1)`` of a ``(K, D)`` weight (Tomczak &
    Welling's hard-tanh into the pixel range), initialised near 0.05 (their MNIST choice).

    Called on the model's input only to place it in the graph: the output is ``(K, D)``
    whatever the batch.
    """

    def __init__(self, components, pixels, **kwargs):
        super().__init__(**kwargs)
        self.components = int(components)
        self.pixels = int(pixels)

    def build(self, input_shape):
        self.pseudo = self.add_weight(
            name="pseudo_inputs", shape=(self.components, self.pixels),
            initializer=keras.initializers.RandomNormal(mean=0.05, stddev=0.01))

    def call(self, inputs):
        return self.values()

    def values(self):
        """The pseudo-inputs, ``(K, D)`` in [0, 1]."""
        return ops.clip(self.pseudo, 0.0, 1.0)

    def compute_output_shape(self, input_shape):
        return (self.components, self.pixels)

    def get_config(self):
        return {**super().get_config(), "components": self.components, "pixels": self.pixels}


@keras.saving.register_keras_serializable(package="vaelab")
class LatentStack(Sampling):
    """The stochastic part of a VAE with upper layers, a flow or a VampPrior (module docstring).

    Args:
        upper: for each stochastic layer above the first, bottom-up, ``[latent, [widths]]``:
            its dimensions and the hidden widths of the MLP computing its posterior from the
            layer below (the prior's MLP, top-down, has the reversed widths).
        activation: of those MLPs' and the flow's hidden layers.
        flow_steps: IAF steps on the first layer's posterior (0: none).
        flow_width: hidden width of each step's MADE (two hidden layers).
        flow_context: whether each step's MADE also sees the encoder's ``[mean, log_var]``
            (module docstring).
        components: the VampPrior's K (0: the standard normal prior); the layer then takes
            four inputs.
        kl_scale, seed, free_bits: as :class:`~vaelab.core.layers.Sampling`'s (free bits
            per dimension of every layer's KL).
    """

    def __init__(self, upper=(), activation="tanh", flow_steps=0, flow_width=0, components=0,
                 kl_scale=1 / 784, seed=None, free_bits=0.0, flow_context=False, **kwargs):
        per_layer = isinstance(free_bits, (list, tuple))
        super().__init__(kl_scale=kl_scale, seed=seed,
                         free_bits=max(free_bits) if per_layer else free_bits, **kwargs)
        if per_layer:
            if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0
                   or not math.isfinite(v) for v in free_bits):
                raise ValueError(f"free_bits must be non-negative finite numbers, received "
                                 f"{free_bits!r}")
            self.free_bits = [float(v) for v in free_bits]
        self.upper = [[int(latent), [int(w) for w in widths]] for latent, widths in upper]
        self.activation = activation
        self.flow_steps = int(flow_steps)
        self.flow_width = int(flow_width)
        self.components = int(components)
        self.flow_context = bool(flow_context)
        if self.flow_context and not self.flow_steps:
            raise ValueError("flow_context needs flow_steps > 0")
        if self.upper and (self.flow_steps or self.components):
            raise ValueError("a LatentStack with upper layers has neither a flow nor a "
                             "VampPrior")
        if self.flow_steps and self.flow_width < 1:
            raise ValueError(f"flow_width must be a positive integer, received {flow_width!r}")
        if per_layer and len(self.free_bits) != self.layer_count:
            raise ValueError(f"free_bits has {len(self.free_bits)} values for "
                             f"{self.layer_count} stochastic layers")
        if any(self.layer_free_bits()) and not self.factorized:
            raise ValueError("free bits need a KL per dimension, which a flow or a VampPrior "
                             "has not")

    @property
    def layer_count(self) -> int:
        return 1 + len(self.upper)

    @property
    def factorized(self) -> bool:
        """Whether every layer's KL splits over dimensions (diagonal Gaussians both sides)."""
        return not (self.flow_steps or self.components)

    @property
    def widths(self) -> list[int]:
        """Every stochastic layer's dimensions, bottom-up (known once built)."""
        return [self.latent] + [latent for latent, _ in self.upper]

    @property
    def top_dim(self) -> int:
        return self.widths[-1]

    def noise_width(self) -> int:
        """Standard normal draws one sample needs: every layer's dimensions."""
        return sum(self.widths)

    def build(self, input_shape):
        super().build(input_shape[:2])
        self.latent = int(input_shape[0][-1])
        self.up_nets, self.down_nets = [], []
        below = self.latent
        for i, (latent, widths) in enumerate(self.upper, start=2):
            self.up_nets.append(self._gaussian_net(f"q{i}", below, widths, latent))
            self.down_nets.append(self._gaussian_net(f"p{i - 1}", latent, widths[::-1], below))
            below = latent
        self.flow = []
        degrees = np.arange(1, self.latent + 1)
        hidden = made_degrees(self.latent, self.flow_width) if self.flow_steps else None
        first_activation = None if self.flow_context else self.activation
        for t in range(self.flow_steps):
            step = [MaskedDense(degrees, hidden, activation=first_activation, name=f"iaf{t}_h1"),
                    MaskedDense(hidden, hidden, activation=self.activation, name=f"iaf{t}_h2"),
                    MaskedDense(hidden, degrees, strict=True, name=f"iaf{t}_m"),
                    MaskedDense(hidden, degrees, strict=True, name=f"iaf{t}_s")]
            shape = (None, self.latent)
            for layer in step[:2]:
                layer.build(shape)
                shape = layer.compute_output_shape(shape)
            step[2].build(shape)
            step[3].build(shape)
            if self.flow_context:  # built last: a context-free flow's weights are unchanged
                # degree 0: every hidden unit sees the whole context
                step.append(MaskedDense(np.zeros(2 * self.latent), hidden,
                                        name=f"iaf{t}_context"))
                step[4].build((None, 2 * self.latent))
            self.flow.append(step)

    def _gaussian_net(self, name, inputs, widths, latent):
        """Hidden layers, then mean and log-variance heads, built for ``inputs`` features."""
        layers = [OurDense(w, self.activation, name=f"{name}_hidden_{j + 1}")
                  for j, w in enumerate(widths)]
        heads = [OurDense(latent, name=f"{name}_mean"), OurDense(latent, name=f"{name}_log_var")]
        shape = (None, inputs)
        for layer in layers:
            layer.build(shape)
            shape = layer.compute_output_shape(shape)
        for head in heads:
            head.build(shape)
        return layers, heads

    @staticmethod
    def _run_gaussian_net(net, h):
        layers, (mean_head, log_var_head) = net
        for layer in layers:
            h = layer(h)
        return mean_head(h), log_var_head(h)

    def _flow(self, z, context=None):
        """``(z_T, Σ log σ)`` of the IAF steps: ``(..., L)`` → ``(..., L), (...)``. Every
        other step works on the dimensions in reverse order; z_T comes back in the
        encoder's order. ``context`` ``(..., 2L)``: the encoder's ``[mean, log_var]``,
        needed (and only used) by a flow with a context."""
        z = ops.convert_to_tensor(z)
        if self.flow_context:
            if context is None:
                raise ValueError("this flow needs the encoder's [mean, log_var] as context")
            context = ops.convert_to_tensor(context) + ops.zeros_like(z[..., :1])
            activation = keras.activations.get(self.activation)
        log_det = ops.zeros(ops.shape(z)[:-1], dtype=z.dtype)
        for t, (h1, h2, m_head, s_head, *rest) in enumerate(self.flow):
            if t:
                z = ops.flip(z, axis=-1)
            h = h2(activation(h1(z) + rest[0](context)) if rest else h1(z))
            gate = ops.sigmoid(s_head(h) + FLOW_GATE_SHIFT)
            z = gate * z + (1 - gate) * m_head(h)
            log_det = log_det + ops.sum(ops.log(gate), -1)
        if len(self.flow) % 2 == 0 and self.flow:
            z = ops.flip(z, axis=-1)  # an odd number of reversals: undo the last
        return z, log_det

    def mean_point(self, mean, log_var):
        """The decoder input a reconstruction from the encoder's mean uses: the mean itself,
        or after a flow the flow of it (z₀ = mean, no noise)."""
        if not self.flow_steps:
            return mean
        return self._flow(mean, self._context(mean, log_var))[0]

    def _context(self, mean, log_var):
        """The flow's context, ``[mean, log_var]``, where the flow has one (else None)."""
        return ops.concatenate([mean, log_var], -1) if self.flow_context else None

    def draw_layers(self, mean, log_var, eps, prior=None) -> list[dict]:
        """Every stochastic layer of one draw per row of ``eps``, bottom-up.

        ``mean``, ``log_var``: the encoder's ``(..., L₁)``, broadcasting against ``eps``
        ``(..., noise_width)``. Each layer's dict has ``z``, ``log_q`` and ``log_p``
        (summed over its dimensions); a factorized layer also ``log_q_d`` and
        ``log_p_d`` per dimension, and a Gaussian layer ``mean`` and ``log_var`` of its
        posterior.
        """
        widths = self.widths
        offsets = np.cumsum([0] + widths)
        eps, mean, log_var = (ops.convert_to_tensor(a) for a in (eps, mean, log_var))
        pieces = [eps[..., offsets[i]:offsets[i + 1]] for i in range(len(widths))]
        mean = mean + ops.zeros_like(pieces[0])
        log_var = log_var + ops.zeros_like(pieces[0])
        z = mean + ops.exp(0.5 * log_var) * pieces[0]
        log_q_d = -0.5 * (LOG_2PI + log_var + ops.square(pieces[0]))
        first = {"z": z, "mean": mean, "log_var": log_var}
        if self.flow_steps:
            z, log_det = self._flow(z, self._context(mean, log_var))
            first = {"z": z, "log_q": ops.sum(log_q_d, -1) - log_det}
        else:
            first["log_q_d"] = log_q_d
        layers = [first]
        for net, piece in zip(self.up_nets, pieces[1:]):
            up_mean, up_log_var = self._run_gaussian_net(net, layers[-1]["z"])
            layers.append({"z": up_mean + ops.exp(0.5 * up_log_var) * piece, "mean": up_mean,
                           "log_var": up_log_var,
                           "log_q_d": -0.5 * (LOG_2PI + up_log_var + ops.square(piece))})
        for i, layer in enumerate(layers):
            if i + 1 < len(layers):
                p_mean, p_log_var = self._run_gaussian_net(self.down_nets[i], layers[i + 1]["z"])
                layer["log_p_d"] = log_normal(layer["z"], p_mean, p_log_var)
            elif self.components:
                layer["log_p"] = log_mixture(layer["z"], *prior)
            else:
                layer["log_p_d"] = log_standard_normal(layer["z"])
            for key in ("log_q", "log_p"):
                if key not in layer:
                    layer[key] = ops.sum(layer[key + "_d"], -1)
        return layers

    def transform(self, mean, log_var, eps, prior=None):
        """``(z₁, [(log p_i, log q_i) per layer])`` of the draws ``eps (..., noise_width)``."""
        layers = self.draw_layers(mean, log_var, eps, prior)
        return layers[0]["z"], [(layer["log_p"], layer["log_q"]) for layer in layers]

    def layer_kls(self, layers) -> list:
        """Each layer's KL estimate (module docstring), per dimension ``(B, L_i)`` where the
        layer is factorized, else ``(B,)``."""
        kls = []
        for i, layer in enumerate(layers):
            if i == len(layers) - 1 and not (self.components or self.flow_steps):
                kls.append(kl_standard_normal_elementwise(layer["mean"], layer["log_var"]))
            elif "log_q_d" in layer and "log_p_d" in layer:
                kls.append(layer["log_q_d"] - layer["log_p_d"])
            else:
                kls.append(layer["log_q"] - layer["log_p"])
        return kls

    def call(self, inputs):
        mean, log_var = inputs[:2]
        prior = tuple(inputs[2:4]) if self.components else None
        eps = self.noise((ops.shape(mean)[0], self.noise_width()), mean.dtype)
        layers = self.draw_layers(mean, log_var, eps, prior)
        for kl, free_bits in zip(self.layer_kls(layers), self.layer_free_bits()):
            if free_bits:
                value = ops.sum(ops.maximum(ops.mean(kl, axis=0), free_bits))
            else:
                value = ops.mean(ops.sum(kl, -1) if len(kl.shape) == 2 else kl)
            self.add_loss(self.kl_weight * self.kl_scale * value)
        return layers[0]["z"]

    def layer_free_bits(self) -> list[float]:
        """λ of each stochastic layer, bottom-up (0: the plain KL)."""
        if isinstance(self.free_bits, list):
            return list(self.free_bits)
        return [self.free_bits] * self.layer_count

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "upper": self.upper, "activation": self.activation,
                "flow_steps": self.flow_steps, "flow_width": self.flow_width,
                "components": self.components, "flow_context": self.flow_context}

    def prior_draw(self, eps, prior=None, choice=None):
        """Decoder inputs ``z₁`` drawn from the prior by ``eps (n, noise_width)`` standard
        normal draws: top-down through the hierarchy, or from VampPrior component
        ``choice (n,)`` (ints)."""
        widths = self.widths
        offsets = np.cumsum([0] + widths)
        eps = ops.convert_to_tensor(eps)
        top = eps[:, offsets[-2]:offsets[-1]]
        if self.components:
            means, log_vars = prior
            return ops.take(means, choice, axis=0) + ops.exp(
                0.5 * ops.take(log_vars, choice, axis=0)) * top
        z = top
        for i in range(len(widths) - 2, -1, -1):
            p_mean, p_log_var = self._run_gaussian_net(self.down_nets[i], z)
            z = p_mean + ops.exp(0.5 * p_log_var) * eps[:, offsets[i]:offsets[i + 1]]
        return z

    def top_to_bottom_mean(self, top):
        """The decoder input reached from top-layer values by each lower prior's mean (the
        explorer's top-layer sliders)."""
        z = top
        for i in range(len(self.widths) - 2, -1, -1):
            z, _ = self._run_gaussian_net(self.down_nets[i], z)
        return z


def standard_transform(mean, log_var, eps):
    """The lab's one Gaussian layer with the standard normal prior, as
    :meth:`LatentStack.transform`: ``(z, [(log p(z), log q(z|x))])``."""
    z = mean + ops.exp(0.5 * log_var) * eps
    log_p = ops.sum(log_standard_normal(z), -1)
    log_q = -0.5 * ops.sum(LOG_2PI + log_var + ops.square(eps), -1)
    return z, [(log_p, log_q)]


def transform(sampling, mean, log_var, eps, prior=None):
    """The draws' decoder input and per-layer log-densities for any sampling layer."""
    if isinstance(sampling, LatentStack):
        return sampling.transform(mean, log_var, eps, prior)
    return standard_transform(mean, log_var, eps)


def noise_width(sampling, latent: int) -> int:
    """Standard normal draws one sample of ``sampling`` needs (``latent`` for the lab's)."""
    return sampling.noise_width() if isinstance(sampling, LatentStack) else latent


def layer_count(sampling) -> int:
    return sampling.layer_count if isinstance(sampling, LatentStack) else 1


