"""Backbones match models.md: exact parameter counts and (B, 10) logits for their input kind."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate

from tests.test_config import compose

PARAMS_FROM_MODELS_MD = {"conv_maxpool": 63_050, "lstm": 53_010}


@pytest.mark.parametrize(("name", "params"), sorted(PARAMS_FROM_MODELS_MD.items()))
def test_parameter_count_and_output_shape(name: str, params: int) -> None:
    cfg = compose([f"model={name}"])
    net = instantiate(cfg.model.net)
    assert sum(parameter.numel() for parameter in net.parameters()) == params
    x = torch.randn(5, 1, 28, 28) if cfg.model.input == "image" else torch.randn(5, 28, 28)
    assert net(x).shape == (5, 10)


def test_lstm_hidden_64_override_matches_the_study_code() -> None:
    net = instantiate(compose(["model=lstm", "model.net.hidden_size=64"]).model.net)
    assert sum(parameter.numel() for parameter in net.parameters()) == 24_714
