"""fmnist: compare Fashion-MNIST classifiers with Lightning and Hydra."""

__version__ = "0.1.0"

from fmnist import resolvers as _resolvers

_resolvers.register()  # before any config is composed, whichever entry point composes it
