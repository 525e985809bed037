"""VAE models: the general VAE (encoder, sampling, decoder, likelihood) and the lab's MLP."""

from vaelab.core.models.mlp import (build_classifier as build_classifier, build_vae as build_vae,
                                    mlp_decoder as mlp_decoder, mlp_encoder as mlp_encoder)
from vaelab.core.models.vae import (VAE as VAE, VAEModel as VAEModel, assemble as assemble,
                                    compile_vae as compile_vae,
                                    sampling_layers as sampling_layers,
                                    walk_layers as walk_layers)
