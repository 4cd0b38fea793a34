"""Lightning's NVML-based CUDA check is dropped only where NVML is missing (where it protects nothing)."""

from __future__ import annotations

import ctypes.util
import os

import pytest

from fmnist.core.process import NVML_CHECK, drop_futile_nvml_check


def pretend_nvml(monkeypatch: pytest.MonkeyPatch, present: bool) -> None:
    real = ctypes.util.find_library
    monkeypatch.setattr(ctypes.util, "find_library",
                        lambda name: ("libnvidia-ml.so.1" if present else None) if name == "nvidia-ml" else real(name))


def test_dropped_where_nvml_cannot_be_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    pretend_nvml(monkeypatch, present=False)
    assert drop_futile_nvml_check() is True
    assert NVML_CHECK not in os.environ


def test_kept_where_nvml_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NVML_CHECK, "1")
    pretend_nvml(monkeypatch, present=True)
    assert drop_futile_nvml_check() is False
    assert os.environ[NVML_CHECK] == "1"


def test_left_alone_when_not_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NVML_CHECK, raising=False)
    assert drop_futile_nvml_check() is False
