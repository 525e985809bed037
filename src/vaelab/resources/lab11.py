# %% [markdown]
# # Lab 11 in Python: the KL divergence and variational autoencoders on MNIST
#
# This tutorial is the vaelab version of the lab: two short derivations, then a VAE
# built from custom Keras layers, the mode collapse it suffers when its KL term is
# too strong, and KL annealing. It runs as a notebook (`vaelab tutorial build` writes
# `lab11-student.ipynb` and `lab11-solution.ipynb`) or as a plain Python file in
# "percent" format (`python lab11.py`). Figures are saved next to the file (a notebook
# also shows them).
#
# The exercises are marked blocks (a begin marker with a TODO hint, the solution, an end
# marker): `vaelab tutorial build` writes a student copy where each block is replaced by
# its hint, and a solution copy without the markers.
#
# Set `VAELAB_TUTORIAL_QUICK=1` to run everything on a small subset in about a minute
# (the numbers then differ from the full run).

# %%
import os
import sys
from pathlib import Path

import vaelab  # selects the JAX backend unless KERAS_BACKEND is set

import keras
import matplotlib

IN_NOTEBOOK = "ipykernel" in sys.modules
if not IN_NOTEBOOK:
    matplotlib.use("Agg")  # a script only saves its figures
import matplotlib.pyplot as plt
import numpy as np
from keras import ops

HERE = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
QUICK = bool(os.environ.get("VAELAB_TUTORIAL_QUICK"))
keras.utils.set_random_seed(0)

# %% [markdown]
# ## Exercise 1: the KL divergence of two normal distributions
#
# **(a)** Let p = N(μ₁, σ₁²) and q = N(μ₂, σ₂²). Show that
#
# $$\mathrm{KL}(q\,\|\,p) = \mathbb{E}_{x\sim q}\left[\log q(x) - \log p(x)\right]
#   = \log\frac{\sigma_1}{\sigma_2} + \frac{\sigma_2^2 + (\mu_1 - \mu_2)^2}{2\sigma_1^2}
#   - \frac{1}{2}.$$
#
# The handout this lab comes from prints the denominator as 2σ₁; it must be 2σ₁²
# (with μ₁ = μ₂ and σ₁ = σ₂ = σ the divergence has to vanish, and only the squared form
# gives 0 for every σ).
#
# *Hint:* write out both log-densities; under q you only need E[x] = μ₂ and
# E[x²] = σ₂² + μ₂².
#
# **(b)** An encoder maps x to a mean vector μ(x) and a variance vector σ²(x), and
# q(z) = N(μ(x), diag σ²(x)) in d dimensions; the prior is p(z) = N(0, I). Show that
#
# $$\mathrm{KL}(q\,\|\,p) = -\frac{1}{2}\sum_{i=1}^{d}
#   \left(1 + \log\sigma_i^2 - \sigma_i^2 - \mu_i^2\right).$$
#
# *Hint:* with a diagonal covariance both densities factor into one univariate normal
# per dimension; the KL of a product of independent factors is the sum of their KLs.
#
# **Solution.** `docs/kl_derivation.md` gives both derivations step by step. In short:
# E_q[log q] = −½(1 + log 2πσ₂²) and E_q[log p] = −½ log 2πσ₁² − (σ₂² + (μ₂ − μ₁)²)/(2σ₁²);
# their difference is (a). For (b), log q(z) = Σᵢ log N(zᵢ | μᵢ, σᵢ²) (the determinant
# of a diagonal matrix is the product of its diagonal, its inverse is the diagonal of
# reciprocals; note the factor means are μᵢ, not μᵢ²), so the KL is a sum of terms
# (a) with μ₁ = 0, σ₁ = 1: −log σᵢ + (σᵢ² + μᵢ²)/2 − ½.
#
# **(c)** Write formula (a) as a function of the four parameters (NumPy arrays or
# numbers).
#
# **A numerical check.** Draw from q and average log q − log p; the Monte-Carlo
# estimate must agree with the formula within a few standard errors.

# %%
def kl_normal(mean_q, std_q, mean_p, std_p):
    """KL(q‖p) for q = N(mean_q, std_q²) and p = N(mean_p, std_p²): formula (a)."""
    #!hwbegin TODO return formula (a) with p = N(mean_p, std_p²) and q = N(mean_q, std_q²); np.log helps
    return np.log(std_p / std_q) + (std_q**2 + (mean_q - mean_p) ** 2) / (2 * std_p**2) - 0.5
    #!hwend


def log_normal(x, mean, std):
    return -0.5 * np.log(2 * np.pi * std**2) - (x - mean) ** 2 / (2 * std**2)


rng = np.random.default_rng(0)
mu_p, sigma_p, mu_q, sigma_q = 0.5, 2.0, -1.0, 0.7
draws = rng.normal(mu_q, sigma_q, 200_000)
log_ratio = log_normal(draws, mu_q, sigma_q) - log_normal(draws, mu_p, sigma_p)
closed_form = float(kl_normal(mu_q, sigma_q, mu_p, sigma_p))
standard_error = log_ratio.std() / np.sqrt(len(draws))
print(f"KL(q||p): closed form {closed_form:.4f}, Monte Carlo {log_ratio.mean():.4f} "
      f"± {standard_error:.4f}")

mean, log_var = rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
z = mean + np.exp(log_var / 2) * rng.standard_normal((200_000, 3))
ratio = (log_normal(z, mean, np.exp(log_var / 2)) - log_normal(z, 0.0, 1.0)).sum(axis=1)
closed_form_b = float(ops.convert_to_numpy(vaelab.kl_standard_normal(mean, log_var))[0])
print(f"KL(q||N(0,I)): closed form {closed_form_b:.4f}, Monte Carlo {ratio.mean():.4f} "
      f"± {ratio.std() / np.sqrt(len(z)):.4f}")

# %% [markdown]
# ## Exercise 2: a VAE on MNIST
#
# vaelab loads MNIST with every file checked against its published SHA-256. Images
# become vectors of 784 values in [0, 1]; the classifier needs one-hot labels.

# %%
(x_train_raw, y_train), (x_test_raw, y_test) = vaelab.load_mnist()
x_train, x_test = vaelab.to_vectors(x_train_raw), vaelab.to_vectors(x_test_raw)
if QUICK:
    x_train, y_train, x_test, y_test = x_train[:6000], y_train[:6000], x_test[:1000], y_test[:1000]
input_size = x_train.shape[1]  # 28 * 28 = 784
print(f"{len(x_train)} training and {len(x_test)} test images of {input_size} pixels")

# %% [markdown]
# ### A custom layer: the dense layer, written by hand
#
# A Keras layer creates its weights in `build` (called once the input shape is known),
# computes its output in `call`, and tells Keras its output shape in
# `compute_output_shape`. `get_config` lists the constructor arguments so a saved model
# can be rebuilt. (vaelab ships the same layer as `vaelab.OurDense`.)

# %%
class TutorialDense(keras.layers.Layer):
    """output = activation(inputs @ kernel + bias), Glorot-normal kernel, zero bias."""

    def __init__(self, units, activation=None, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.activation = keras.activations.get(activation)

    def build(self, input_shape):
        self.kernel = self.add_weight(name="kernel", shape=(input_shape[-1], self.units),
                                      initializer="glorot_normal")
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros")

    def call(self, inputs):
        return self.activation(ops.matmul(inputs, self.kernel) + self.bias)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units,
                "activation": keras.activations.serialize(self.activation)}


# %% [markdown]
# It is used like any built-in layer. A classifier of one hidden layer:

# %%
classifier = keras.Sequential([keras.Input((input_size,)), TutorialDense(32, "relu"),
                               TutorialDense(10, "softmax")])
classifier.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
classifier.fit(x_train, keras.utils.to_categorical(y_train, 10), epochs=2, verbose=2)
_, accuracy = classifier.evaluate(x_test, keras.utils.to_categorical(y_test, 10), verbose=0)
print(f"classifier test accuracy: {accuracy:.4f}")

# %% [markdown]
# ### The sampling layer: the reparametrization trick
#
# The encoder outputs the mean and the **log-variance** of q(z|x) (the handout's code
# calls it `latent_log_std`, but uses it as a log-variance). Sampling
# z = μ + σ·ε with ε ~ N(0, I) keeps z differentiable in μ and σ.
#
# The layer also adds the KL term of exercise 1(b) to the model's loss, multiplied by a
# weight (for annealing, later) and by 1/784: the reconstruction loss is a **mean**
# over 784 pixels while the KL is a **sum** over latent dimensions, and this puts them
# on one scale.
#
# Two details matter under Keras 3 with the JAX backend, where the training step is
# compiled once:
# - the KL weight must be a weight *of the layer* (`add_weight(trainable=False)`). A
#   variable kept outside the model is baked into the compiled step as a constant, and
#   changing it later silently does nothing;
# - the noise must come from a `keras.random.SeedGenerator` owned by the layer, so each
#   step draws new noise.

# %%
class TutorialSampling(keras.layers.Layer):
    def __init__(self, kl_scale=1 / 784, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.kl_scale = kl_scale
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        self.kl_weight = self.add_weight(name="kl_weight", shape=(), trainable=False,
                                         initializer=keras.initializers.Constant(1.0))

    def call(self, inputs):
        mean, log_var = inputs
        #!hwbegin TODO compute the batch mean of the KL divergence of equation (b); ops.sum, ops.square, ops.exp and ops.mean help
        kl = ops.mean(-0.5 * ops.sum(1 + log_var - ops.square(mean) - ops.exp(log_var), axis=-1))
        #!hwend
        self.add_loss(self.kl_weight * self.kl_scale * kl)
        #!hwbegin TODO draw ε ~ N(0, I) of the mean's shape from the layer's seed generator and return z by the reparametrization trick
        epsilon = keras.random.normal(ops.shape(mean), seed=self.seed_generator)
        return mean + ops.exp(log_var / 2) * epsilon
        #!hwend


# %% [markdown]
# ### The VAE
#
# The encoder has **one** hidden layer of 512 units (the handout's text mentions two
# hidden layers of 256 and 64, which its code does not have). Two heads give the mean
# and the log-variance of 32 latent dimensions; the decoder mirrors the encoder and
# ends in a linear layer of 784 outputs. The functional API lets a layer take two
# inputs, as the sampling layer does.

# %%
latent_dim, hidden_dim = 32, 512


def make_vae(kl_scale=1 / 784, seed=0):
    """(model, encoder): x → x̂, and x → z."""
    x = keras.Input((input_size,))
    hidden = TutorialDense(hidden_dim, "relu")(x)
    mean = TutorialDense(latent_dim)(hidden)
    log_var = TutorialDense(latent_dim)(hidden)
    z = TutorialSampling(kl_scale, seed=seed)([mean, log_var])
    output = TutorialDense(input_size)(TutorialDense(hidden_dim, "relu")(z))
    return keras.Model(x, output), keras.Model(x, z)


model, encoder = make_vae()
#!hwbegin TODO compile the model with the mean squared error loss and the Adam optimizer
model.compile(loss="mse", optimizer="adam")
#!hwend
#!hwbegin TODO fit the model for two epochs to reconstruct the training images
model.fit(x_train, x_train, epochs=2, verbose=2)
#!hwend

# %% [markdown]
# ### How well does it reconstruct?
#
# Training image 1 (the handout's `x_train[2, ]`, R counts from 1), before and after,
# with the output clipped to [0, 1]. `output_std` measures how much the reconstructions
# differ between images: 0 would mean the same picture for every input.

# %%
def report(model, name):
    reconstructions = np.clip(model.predict(x_test, verbose=0), 0, 1)
    digit = np.clip(model.predict(x_train[1:2], verbose=0), 0, 1)
    output_std = float(reconstructions.std(axis=0).mean())
    mse = float(np.mean((reconstructions - x_test) ** 2))
    fig, axes = plt.subplots(1, 2, figsize=(4, 2.2))
    for ax, image, title in zip(axes, (x_train[1], digit[0]), ("original", name)):
        ax.imshow(image.reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.savefig(HERE / f"lab11_{name}.png", dpi=100)
    if IN_NOTEBOOK:
        plt.show()
    else:
        plt.close(fig)
    print(f"{name}: test MSE {mse:.4f}, output std {output_std:.4f}")
    return output_std


std_scaled = report(model, "vae")

# %% [markdown]
# ### Mode collapse
#
# Now drop the division by 784 and train again. The KL term is then weighted 784 times
# more heavily against the reconstruction; the cheapest way to shrink it is to make
# q(z|x) equal the prior for every x, and the decoder then outputs the same image —
# roughly the average digit, a gray blob — whatever the input. The
# encoder carries no information about x: the posterior has *collapsed*.

# %%
collapsed_model, _ = make_vae(kl_scale=1.0)
collapsed_model.compile(loss="mse", optimizer="adam")
collapsed_model.fit(x_train, x_train, epochs=2, verbose=2)
std_unscaled = report(collapsed_model, "vae_unscaled")

# %% [markdown]
# ### KL annealing
#
# Annealing trains without the KL term at first, so the network learns to reconstruct,
# then raises its weight linearly to 1. A Keras callback does this between epochs. It
# reaches the weight through `self.model`, the model being trained, so the new value
# lands in the compiled step.

# %%
class KLAnnealingCallback(keras.callbacks.Callback):
    def __init__(self, epoch_start, duration_epochs):
        super().__init__()
        self.epoch_start = epoch_start
        self.duration_epochs = duration_epochs
        self.weights = []

    def _sampling_layers(self):
        return [layer for layer in self.model.layers if isinstance(layer, TutorialSampling)]

    def on_train_begin(self, logs=None):
        for layer in self._sampling_layers():
            layer.kl_weight.assign(0.0)  # no KL at the start

    def on_epoch_begin(self, epoch, logs=None):
        epoch += 1  # Keras counts epochs from 0
        if epoch < self.epoch_start:
            print(f"epoch {epoch}: before epoch {self.epoch_start}, the KL weight stays 0")
        else:
            #!hwbegin TODO interpolate the weight linearly: 0 at epoch_start, 1 after duration_epochs more epochs
            weight = min(1.0, (epoch - self.epoch_start) / self.duration_epochs)
            #!hwend
            for layer in self._sampling_layers():
                layer.kl_weight.assign(weight)
            print(f"epoch {epoch}: KL weight {weight:g}")

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append(float(self._sampling_layers()[0].kl_weight.numpy()))


# %% [markdown]
# The lab's run: annealing from epoch 4 over 8 epochs, 20 epochs in all, once with the
# 1/784 scaling and once without. (The quick mode runs 5 epochs, annealing from epoch 2
# over 2.)

# %%
epochs, start, duration = (5, 2, 2) if QUICK else (20, 4, 8)
results = {}
for name, kl_scale in (("annealed", 1 / 784), ("annealed_unscaled", 1.0)):
    #!hwbegin TODO build a fresh VAE with this kl_scale and compile it as before
    annealed_model, _ = make_vae(kl_scale=kl_scale)
    annealed_model.compile(loss="mse", optimizer="adam")
    #!hwend
    callback = KLAnnealingCallback(start, duration)
    annealed_model.fit(x_train, x_train, epochs=epochs, verbose=2, callbacks=[callback])
    results[name] = report(annealed_model, name)
    print(f"{name}: KL weights per epoch {callback.weights}")

# %% [markdown]
# ### What the numbers say
#
# Compare the output std of the four models (and the saved pictures). With the 1/784
# scaling the reconstructions vary with the input. Without it the model collapses after
# two epochs; with annealing it learns to reconstruct while the weight is 0, but — as
# vaelab's full run shows (`vaelab lab`, report section 6) — as soon as the unscaled KL
# weight grows the latent units die and the gray blob returns: here annealing delays
# the collapse, it does not prevent it. The scale of the KL is what matters.

# %%
print(f"output std: KL/784 {std_scaled:.4f}, unscaled {std_unscaled:.4f}, "
      f"annealed {results['annealed']:.4f}, annealed unscaled {results['annealed_unscaled']:.4f}")
