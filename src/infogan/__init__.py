"""InfoGAN (Chen et al. 2016): interpretable latent codes by maximising mutual information."""

__version__ = "0.1.0"
