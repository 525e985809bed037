"""vaelab's models as eager PyTorch training loops: the yardsticks vaelab's epochs are held to.

Written the way pytorch/examples writes its VAE: an ``nn.Module``, Adam, a Python loop over
shuffled batches, ``loss.backward()`` and ``optimizer.step()`` each step, then a validation
pass under ``torch.no_grad()``. Two architectures:

- ``conv``: vaelab's ``--model conv``: two stride-2 3 × 3 convolutions (32, 64 filters,
  ReLU), a dense hidden layer, mean and log-variance heads; the decoder mirrored with two
  stride-2 transposed convolutions and a stride-1 one to a single channel. PyTorch pads
  "same" symmetrically where Keras pads one more at the end, so the functions differ at
  the borders while the arithmetic, the thing measured, is the same.
- ``mlp``: the lab's model, 784-512 ReLU, latent 32, decoder 512 ReLU to 784.

The loss is vaelab's Gaussian one: the mean squared error over pixels plus the KL
divergence divided by the pixels, averaged over the batch.

    python benchmarks/torch_eager.py [--model conv|mlp] [--batch 32] [--epochs 3] [--images 10000]

``speed.py --only families`` imports :func:`make` and :func:`epoch` to measure them
interleaved with vaelab's epochs.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

FILTERS = (32, 64)


class ConvVAE(nn.Module):
    def __init__(self, side: int = 28, hidden: int = 16, latent: int = 32):
        super().__init__()
        self.quarter = side // 4
        flat = FILTERS[1] * self.quarter * self.quarter
        self.conv1 = nn.Conv2d(1, FILTERS[0], 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(FILTERS[0], FILTERS[1], 3, stride=2, padding=1)
        self.enc = nn.Linear(flat, hidden)
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.dec = nn.Linear(latent, hidden)
        self.expand = nn.Linear(hidden, flat)
        self.up1 = nn.ConvTranspose2d(FILTERS[1], FILTERS[1], 3, stride=2, padding=1,
                                      output_padding=1)
        self.up2 = nn.ConvTranspose2d(FILTERS[1], FILTERS[0], 3, stride=2, padding=1,
                                      output_padding=1)
        self.out = nn.ConvTranspose2d(FILTERS[0], 1, 3, padding=1)

    def encode(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x))))
        h = F.relu(self.enc(h.flatten(1)))
        return self.mean(h), self.log_var(h)

    def decode(self, z):
        h = F.relu(self.expand(F.relu(self.dec(z))))
        h = h.view(-1, FILTERS[1], self.quarter, self.quarter)
        return self.out(F.relu(self.up2(F.relu(self.up1(h)))))

    def forward(self, x):
        mean, log_var = self.encode(x)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.decode(z), mean, log_var


class MlpVAE(nn.Module):
    def __init__(self, pixels: int = 784, hidden: int = 512, latent: int = 32):
        super().__init__()
        self.enc = nn.Linear(pixels, hidden)
        self.mean = nn.Linear(hidden, latent)
        self.log_var = nn.Linear(hidden, latent)
        self.dec = nn.Linear(latent, hidden)
        self.out = nn.Linear(hidden, pixels)

    def forward(self, x):
        flat = x.flatten(1)
        h = F.relu(self.enc(flat))
        mean, log_var = self.mean(h), self.log_var(h)
        z = mean + torch.exp(0.5 * log_var) * torch.randn_like(mean)
        return self.out(F.relu(self.dec(z))).view_as(x), mean, log_var


def loss_function(x_hat, x, mean, log_var):
    pixels = x[0].numel()
    mse = F.mse_loss(x_hat, x, reduction="none").flatten(1).mean(1)
    kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(1)
    return (mse + kl / pixels).mean()


def make(seed: int = 0, hidden: int = 16, latent: int = 32, model: str = "conv"):
    """The ``model`` (``conv`` with a dense layer of ``hidden``; ``mlp``, the lab's 512)
    and its Adam."""
    torch.manual_seed(seed)
    model = ConvVAE(hidden=hidden, latent=latent) if model == "conv" else MlpVAE(latent=latent)
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def epoch(model, optimizer, x_train: np.ndarray, x_test: np.ndarray, batch: int,
          seed: int) -> float:
    """One training epoch (shuffled, the last partial batch kept) and a validation pass
    over ``x_test`` in batches of 1000; returns the seconds it took."""
    started = time.perf_counter()
    train = torch.from_numpy(x_train.reshape(-1, 1, 28, 28))
    order = torch.from_numpy(np.random.default_rng([seed]).permutation(len(train)))
    model.train()
    for i in range(0, len(train), batch):
        x = train[order[i:i + batch]]
        optimizer.zero_grad()
        x_hat, mean, log_var = model(x)
        loss = loss_function(x_hat, x, mean, log_var)
        loss.backward()
        optimizer.step()
    model.eval()
    test = torch.from_numpy(x_test.reshape(-1, 1, 28, 28))
    with torch.no_grad():
        for i in range(0, len(test), 1000):
            x = test[i:i + 1000]
            x_hat, mean, log_var = model(x)
            loss_function(x_hat, x, mean, log_var)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=("conv", "mlp"), default="conv")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=10000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x_train = rng.random((args.images, 784), dtype=np.float32)
    x_test = rng.random((10000, 784), dtype=np.float32)
    model, optimizer = make(model=args.model)
    seconds = [epoch(model, optimizer, x_train, x_test, args.batch, e) for e in range(args.epochs)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.model}, "
          f"batch {args.batch}: "
          f"epochs {[round(s, 2) for s in seconds]} s, median "
          f"{statistics.median(seconds):.2f} s")


if __name__ == "__main__":
    main()
