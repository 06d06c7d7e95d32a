"""cnn: train and classify images with convolutional networks in JAX/Flax."""

__version__ = "0.1.0"
