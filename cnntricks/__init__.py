"""cnntricks: train convolutional networks with the practical tricks, one config option each."""

__version__ = "0.1.0"
