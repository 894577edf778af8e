"""Fault knobs: off by default."""

from __future__ import annotations

import pytest

from bedrock_assets.local_stack import FaultConfig


def test_fault_config_defaults_off() -> None:
    cfg = FaultConfig()
    assert (cfg.record_error_rate, cfg.drop_rate, cfg.throttle_every, cfg.min_records) == (0.0, 0.0, 0, 100)
    assert cfg.fail_jobs_matching is None and cfg.expire_jobs_matching is None
    with pytest.raises(ValueError):
        cfg.update(drop_rate=2)
