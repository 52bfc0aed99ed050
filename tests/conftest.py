"""Shared fixtures: deterministic generators, float64 by default for value checks."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)
