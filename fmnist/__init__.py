"""fmnist: compare Fashion-MNIST classifiers with Lightning and Hydra."""

__version__ = "0.1.0"
