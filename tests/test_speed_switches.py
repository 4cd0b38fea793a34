"""The speed switches of a run config: torch.compile modes and the NaN guard's check cadence."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from fmnist.core.errors import ConfigError
from fmnist.training.builders import build_module, prepare_net
from fmnist.training.safety import NonFiniteLossError, NonFiniteLossGuard
from tests.helpers import compose


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


def feed(guard: NonFiniteLossGuard, trainer: SimpleNamespace, losses: list[float]) -> None:
    for loss in losses:
        trainer.global_step += 1  # one optimizer step per call here
        guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, None, 0)  # type: ignore[arg-type]


def test_nan_guard_checks_every_n_steps_and_before_validation() -> None:
    trainer = SimpleNamespace(current_epoch=0, checkpoint_callback=None, global_step=0)
    guard = NonFiniteLossGuard(check_every_n_steps=3)
    feed(guard, trainer, [1.0, 0.5, 0.2, 0.1, 0.1])  # finite: silent
    feed(guard, trainer, [0.1])  # the 3rd kept loss since the last check: checked, finite
    feed(guard, trainer, [float("nan"), 0.3])  # a bad step, not yet checked
    with pytest.raises(NonFiniteLossError, match="NaN or infinite"):
        feed(guard, trainer, [0.2])  # the 3rd step since the last check finds the NaN two steps back
    feed(guard, trainer, [float("inf")])
    with pytest.raises(NonFiniteLossError, match="no checkpoint had been saved yet"):
        guard.on_validation_start(trainer, None)  # type: ignore[arg-type]  # before any checkpoint can be saved
    guard.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]  # nothing pending any more
    with pytest.raises(ValueError, match="at least 1"):
        NonFiniteLossGuard(0)


class OneBufferNet(nn.Module):
    """Mimics a CUDA-graph replay: every call writes its result into the same output tensor."""

    def __init__(self) -> None:
        super().__init__()
        self.out = torch.zeros(2, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.out.copy_(x.flatten(1)[:, :10])
        return self.out


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_cuda_graph_modes_mark_each_step_and_keep_both_flip_outputs(mode: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: steps.append(1))
    cfg = compose("train", "model=conv_maxpool", "model.tta_flip=true", f"model.compile={mode}")
    module = build_module(cfg)
    assert module.cuda_graphs is True
    module.net = OneBufferNet()  # in place of the compiled net: compiling it on a CPU would not replay graphs
    x = torch.arange(2 * 28 * 28, dtype=torch.float32).reshape(2, 1, 28, 28)
    expected = (x.flatten(1)[:, :10] + x.flip(-1).flatten(1)[:, :10]) / 2
    assert torch.equal(module.eval_logits(x), expected)  # without the copy, the mirror's output overwrites both
    assert len(steps) == 2


def test_other_compile_settings_leave_the_net_output_alone() -> None:
    for setting in ("false", "true", "default", "max-autotune-no-cudagraphs"):
        module = build_module(compose("train", "model=conv_maxpool", f"model.compile={setting}"))
        assert module.cuda_graphs is False
        module.net = OneBufferNet()
        assert module(torch.ones(2, 1, 28, 28)) is module.net.out


FAULTS_PROBE = """
import resource, sys, torch
from fmnist.core.process import keep_freed_memory
took = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(8):  # glibc settles within a few rounds
    torch.empty(16 << 20).fill_(1.0)  # 64 MiB: above glibc's largest automatic mmap threshold (32 MiB)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.empty(16 << 20).fill_(1.0)
print(took, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 10)
"""


@pytest.mark.cli
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_kept_memory_is_reused_without_page_faults() -> None:
    """A 64 MiB tensor freed and allocated again faults in 16k fresh pages each time, unless memory is kept
    (then none once glibc has settled)."""
    def faults(mode: str) -> tuple[str, int]:
        done = subprocess.run([sys.executable, "-c", FAULTS_PROBE, mode], capture_output=True, text=True, check=True)
        took, count = done.stdout.split()
        return took, int(count)

    assert faults("default")[1] > 10_000
    took, count = faults("keep")
    assert took == "True" and count < 100
