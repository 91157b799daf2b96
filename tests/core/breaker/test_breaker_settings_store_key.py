"""A breaker follows ``store.on_unavailable`` from the settings, like its ``breaker.*`` keys."""

from __future__ import annotations

from bounceback import CircuitBreaker


def test_store_on_unavailable_comes_from_the_settings() -> None:
    closed = CircuitBreaker.from_settings("inventory", {"store.on_unavailable": "fail-closed"})
    assert closed.config.store_unavailable == "fail-closed"
    assert CircuitBreaker.from_settings("inventory2", {}).config.store_unavailable == "fail-open"
    explicit = CircuitBreaker.from_settings(
        "inventory3", {"store.on_unavailable": "fail-closed"}, store_unavailable="fail-open"
    )
    assert explicit.config.store_unavailable == "fail-open"
