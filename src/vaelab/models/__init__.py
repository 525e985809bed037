"""VAE models: the general VAE (encoder, sampling, decoder, likelihood) and the lab's MLP."""

from vaelab.models.mlp import build_classifier as build_classifier
from vaelab.models.mlp import build_vae as build_vae
from vaelab.models.mlp import mlp_decoder as mlp_decoder
from vaelab.models.mlp import mlp_encoder as mlp_encoder
from vaelab.models.vae import VAE as VAE
from vaelab.models.vae import VAEModel as VAEModel
from vaelab.models.vae import assemble as assemble
from vaelab.models.vae import compile_vae as compile_vae
from vaelab.models.vae import sampling_layers as sampling_layers
from vaelab.models.vae import walk_layers as walk_layers
