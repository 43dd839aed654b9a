"""keras-vae: Variational Autoencoders (Kingma & Welling, 2014) for Keras 3."""

__version__ = "0.1.0"
