"""Plain `nn.Module` backbones; they know nothing of training. Configs in conf/model/ select them."""

from fmnist.models.keras_cnns import Conv2dNet, Conv2dSimple, Conv2dSimple2, Conv2dSimple3, GeronCNN, InceptionCNN
from fmnist.models.qstp import QstpCNN
from fmnist.models.resnet import PreActResNet
from fmnist.models.sequence import RowRNN
from fmnist.models.study_a import ConvMaxPool, DropNormConv, SmallConv, StrideConv

__all__ = [
    "Conv2dNet",
    "Conv2dSimple",
    "Conv2dSimple2",
    "Conv2dSimple3",
    "ConvMaxPool",
    "DropNormConv",
    "GeronCNN",
    "InceptionCNN",
    "PreActResNet",
    "QstpCNN",
    "RowRNN",
    "SmallConv",
    "StrideConv",
]
