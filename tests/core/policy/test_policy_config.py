"""How a Policy reads its limits: shared when equal, refused by name when wrong, live from settings."""

from __future__ import annotations

import pytest

from bounceback import ConfigError, Policy
from bounceback.core.settings._source import StaticSettings
from bounceback.testing import FakeClock


def test_policies_given_the_same_arguments_share_one_config_and_bad_ones_are_still_refused() -> None:
    clock = FakeClock()
    assert Policy("a", clock=clock).config is Policy("b", clock=clock).config
    assert Policy("a", attempts=3, clock=clock).config is Policy("c", attempts=3, clock=clock).config
    assert Policy("a", attempts=3, clock=clock).config is not Policy("a", attempts=4, clock=clock).config
    # True == 1 and hash(True) == hash(1): a shared config must not let a bool through as a count.
    assert Policy("a", attempts=1, clock=clock).config.attempts == 1
    with pytest.raises(ConfigError) as info:
        Policy("a", attempts=True, clock=clock)
    assert info.value.field == "attempts"


def test_settings_change_the_limits_of_a_decorated_function_live() -> None:
    settings = StaticSettings({"retry.max_attempts": 2})
    clock = FakeClock()
    calls = 0

    def down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError("down")

    policy = Policy("live", settings=settings, budget=None, clock=clock)
    wrapped = policy(down)
    with pytest.raises(ConnectionResetError):
        wrapped()
    assert calls == 2
    settings.set("retry.max_attempts", 4)
    with pytest.raises(ConnectionResetError):
        wrapped()
    assert (calls, policy.config.attempts) == (6, 4)
