"""The parameter counts of models.md, which tests/test_models.py checks and tests/test_zoo.py uses."""

from __future__ import annotations

# Figures as printed in ../shared/models.md ("PyTorch count where the original was Keras"); the beyond-study
# models (gru, bilstm, resnet) are our own and their figures are what this zoo ships.
PARAMS_FROM_MODELS_MD = {
    "conv_maxpool": 63_050,
    "stride_conv": 67_178,
    "small_conv": 24_778,
    "drop_norm_l2": 403_452,
    "drop_norm_conv": 805_370,
    "rnn": 14_010,
    "lstm": 53_010,
    "lstm186": 162_574,
    "lstm2_784_186": 3_277_742,
    "cnn_geron": 1_413_834,
    "conv2dnet": 3_214_986,
    "inception_cnn": 20_109_374,
    "conv2dsimple": 409_034,
    "conv2dsimple2": 616_202,
    "conv2dsimple3": 5_657_840,
    "qstp_cnn": 4_080_094,
    "gru": 161_034,
    "bilstm": 164_362,
    "resnet": 11_171_018,
}
# For study C's BatchNorm models models.md copied Keras' total, which also counts BatchNorm's moving mean and
# variance (non-trainable weights in Keras, buffers in PyTorch): that many values on top of the parameters.
KERAS_MOVING_STATISTICS = {"conv2dnet": 128, "conv2dsimple": 64, "conv2dsimple2": 192, "conv2dsimple3": 320}


def pytorch_params(name: str) -> int:
    """The figure `python -m fmnist.models` prints: PyTorch's count of trainable parameters."""
    return PARAMS_FROM_MODELS_MD[name] - KERAS_MOVING_STATISTICS.get(name, 0)
