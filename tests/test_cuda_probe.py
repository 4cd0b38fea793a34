"""Lightning's NVML-based CUDA check is dropped only where NVML is missing (where it protects nothing)."""

from __future__ import annotations

import os

import pytest
import torch

from fmnist.training.cuda_probe import NVML_CHECK, drop_futile_nvml_check


def test_dropped_where_nvml_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: -1)
    assert drop_futile_nvml_check() is True
    assert NVML_CHECK not in os.environ


def test_kept_where_nvml_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.cuda, "_device_count_nvml", lambda: 2)
    assert drop_futile_nvml_check() is False
    assert os.environ[NVML_CHECK] == "1"


def test_left_alone_when_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NVML_CHECK, raising=False)
    assert drop_futile_nvml_check() is False
