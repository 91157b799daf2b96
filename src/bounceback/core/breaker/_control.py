"""Controlling a circuit breaker: its limits (built, followed live from settings), manual actions, metrics.

Split from ``_breaker.py`` by responsibility; ``CircuitBreaker`` mixes this in.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from bounceback.core.breaker._config import SETTINGS_KEYS, STORE_KEYS, BreakerConfig, build_config
from bounceback.core.breaker._core import BreakerState, _BreakerCore, is_warm
from bounceback.core.breaker._metrics import NO_CHECKS, BreakerMetrics, HealthStats
from bounceback.core.breaker._store import NO_OUTCOME, WindowSpec
from bounceback.errors import ConfigError

__all__: list[str] = []

_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_F = BreakerState.FORCED_OPEN
_D = BreakerState.DISABLED
_log = logging.getLogger("bounceback.breaker")


class _ControlMixin(_BreakerCore):
    __slots__ = ()

    _explicit: dict[str, Any]
    _overlay: Mapping[str, Any]
    _settings: Any
    _unsubscribe: Callable[[], None] | None
    _health_stats: HealthStats

    if TYPE_CHECKING:

        @property
        def state(self) -> BreakerState: ...

    # -- configuration -------------------------------------------------------------------------------

    def _build(self) -> BreakerConfig:
        values: dict[str, Any] = {}
        labels: dict[str, str] = {}
        src = self._settings
        layers: list[Mapping[str, Any]] = []
        if src is not None:
            layers.append(src if isinstance(src, Mapping) else src.effective(self.name))
        layers.append(self._overlay)
        for layer in layers:
            for key, field in (*SETTINGS_KEYS.items(), *STORE_KEYS.items()):
                if key in layer:
                    values[field] = layer[key]
                    labels[field] = key
        for field, value in self._explicit.items():
            values[field] = value
            labels.pop(field, None)
        return build_config(values, labels)

    def _follow(self, source: Any) -> None:
        ref = weakref.ref(self)

        def on_change() -> None:
            brk = ref()
            if brk is not None:
                brk.reload()

        self._unsubscribe = source.subscribe(on_change)

    @property
    def config(self) -> BreakerConfig:
        """The limits in force now."""
        return self._cfg

    def configure(self, **limits: Any) -> None:
        """Change limits while running (keyword names as in the constructor); invalid values change nothing.

        >>> from bounceback import CircuitBreaker
        >>> brk = CircuitBreaker("docs-configure")
        >>> brk.configure(failure_rate=10, max_in_flight=5)
        >>> brk.config.max_in_flight
        5
        """
        before = self._explicit
        self._explicit = {**before, **limits}
        try:
            cfg = self._build()
        except ConfigError:
            self._explicit = before
            raise
        self._install(cfg)

    def apply_settings(self, values: Mapping[str, Any]) -> None:
        """Change limits from settings keys while running; invalid values change nothing.

        Keys outside ``breaker.*`` are ignored, so a whole resolved settings mapping can be passed.
        """
        unknown = [k for k in values if k.startswith("breaker.") and k not in SETTINGS_KEYS]
        unknown = [k for k in unknown if k != "breaker.enabled"]
        if unknown:
            raise ConfigError(unknown[0], values[unknown[0]], "a key among " + ", ".join(SETTINGS_KEYS))
        before = self._overlay
        self._overlay = {**before, **{k: v for k, v in values.items() if k in SETTINGS_KEYS}}
        try:
            cfg = self._build()
        except ConfigError:
            self._overlay = before
            raise
        self._install(cfg)

    def reload(self) -> None:
        """Re-read the settings source (done by itself when it reports a change).

        A bad stored value leaves the last good limits in force, with a warning in the log.
        """
        try:
            cfg = self._build()
        except ConfigError:
            _log.warning(
                "settings for breaker %r are invalid; keeping the last good values", self.name, exc_info=True
            )
            return
        self._install(cfg)

    def _install(self, cfg: BreakerConfig) -> None:
        spec = WindowSpec(cfg.window_type, cfg.window)
        with self._lock:
            self._cfg = cfg
            if spec != self._spec:
                self._spec = spec
                self._warm = True  # the store starts an empty window of the new shape
            self._reflags()
        counts = self._io_counts()
        with self._lock:
            self._warm = is_warm(cfg, counts)
            self._reflags()
        if self._state is _O:
            self._opened()

    # -- manual control ------------------------------------------------------------------------------

    def _manual(
        self, new: BreakerState, reason: str, *, clear: bool = False, reopens: int | None = None
    ) -> None:
        # A breaker sharing its store may lose the race to another process: adopt, then try again.
        for _ in range(5):
            with self._lock:
                if self._state is new and new is not _C:
                    return
                change = self._move(new, reason, clear=clear, reopens=reopens)
                done = self._state is new
            self._after(change)
            if done:
                return

    def force_open(self, reason: str = "forced open by hand") -> None:
        """Refuse every call until :meth:`force_close`, :meth:`reset` or :meth:`disable`."""
        self._manual(_F, reason)

    def force_close(self, reason: str = "closed by hand") -> None:
        """Close now with an empty window. The open-time streak is kept: if the dependency is still
        down, the next open lasts longer."""
        self._manual(_C, reason, clear=True)

    def disable(self, reason: str = "disabled by hand") -> None:
        """Let every call through and count nothing, until :meth:`force_close` or :meth:`reset`."""
        self._manual(_D, reason)

    def reset(self) -> None:
        """Back to new: closed, empty window, no open-time streak, counters (rejected, opens, health) zeroed."""
        self._manual(_C, "reset", clear=True, reopens=0)
        with self._lock:
            self._refusals.take()
            self._rejected = 0
            self._opens = 0
            self._health_stats = NO_CHECKS

    # -- reading -------------------------------------------------------------------------------------

    def metrics(self) -> BreakerMetrics:
        """A snapshot: state, counts and rates in the window, rejections, time in state, transitions.

        >>> from bounceback import CircuitBreaker
        >>> brk = CircuitBreaker("docs-snapshot")
        >>> brk.call(len, "abc")
        3
        >>> brk.metrics().calls
        1
        """
        state = self.state
        with self._lock:
            successes = self._tally.take()
            self._rejected += self._refusals.take()
        counts = self._io_record(successes, NO_OUTCOME)[0] if successes else self._io_counts()
        now = self._now()
        is_open = state is _O
        return BreakerMetrics(
            name=self.name,
            state=state.value,
            calls=counts.calls,
            failures=counts.failures,
            slow_calls=counts.slow,
            failure_rate=counts.failure_rate,
            slow_call_rate=counts.slow_call_rate,
            consecutive_failures=counts.consecutive_failures,
            rejected=self._rejected,
            in_flight=self._in_flight,
            probes_in_flight=self._probes,
            opens=self._opens,
            time_in_state=max(0.0, now - self._since),
            retry_at=self._open_until_wall if is_open else None,
            retry_after=max(0.0, self._open_until - now) if is_open else None,
            last_transitions=tuple(self._transitions or ()),
            health=self._health_stats,
            store=self._store.name,
            store_available=not self._degraded,
        )
