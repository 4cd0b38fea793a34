"""Plain `nn.Module` backbones; they know nothing of training. Configs in conf/model/ select them."""

from fmnist.models.cnn import ConvMaxPool
from fmnist.models.sequence import RowRNN

__all__ = ["ConvMaxPool", "RowRNN"]
