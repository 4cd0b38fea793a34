"""The speed switches of a run config: torch.compile modes and the NaN guard's check cadence."""

from __future__ import annotations

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.errors import ConfigError
from fmnist.training.builders import prepare_net
from fmnist.training.safety import NonFiniteLossGuard


def model_cfg(compile_setting: object) -> DictConfig:
    return OmegaConf.create({"compile": compile_setting, "channels_last": False})


@pytest.mark.parametrize("setting", [True, "reduce-overhead", "max-autotune"])
def test_compile_accepts_true_or_a_mode(setting: object) -> None:
    net = prepare_net(nn.Linear(4, 2), model_cfg(setting))  # torch.compile is lazy: nothing compiles here
    assert hasattr(net, "_orig_mod")


def test_compile_false_keeps_the_module() -> None:
    net = nn.Linear(4, 2)
    assert prepare_net(net, model_cfg(False)) is net


@pytest.mark.parametrize("setting", ["fastest", 3])
def test_unknown_compile_setting_names_the_key_and_the_choices(setting: object) -> None:
    with pytest.raises(ConfigError, match=r"model.compile: .*Fix: use true, false or one of .*reduce-overhead"):
        prepare_net(nn.Linear(4, 2), model_cfg(setting))


def test_nan_guard_reads_every_step_on_cpu_and_rarely_on_a_gpu() -> None:
    guard = NonFiniteLossGuard()
    assert guard.steps_between_checks(torch.device("cpu")) == 1
    assert guard.steps_between_checks(torch.device("cuda", 0)) == NonFiniteLossGuard.ACCELERATOR_CHECK_EVERY
    assert NonFiniteLossGuard(7).steps_between_checks(torch.device("cuda", 0)) == 7
    with pytest.raises(ValueError, match="at least 1"):
        NonFiniteLossGuard(0)
