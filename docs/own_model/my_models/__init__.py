"""An example of a model that lives outside fmnist: any package or folder on PYTHONPATH works the same way."""

from my_models.separable import SeparableCNN

__all__ = ["SeparableCNN"]
