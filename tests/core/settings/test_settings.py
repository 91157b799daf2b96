"""The settings schema, validation, resolution, documents and the in-memory source."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback import ConfigError, Policy
from bounceback.core.settings._source import (
    SCHEMA,
    SettingsLayers,
    SettingsSource,
    StaticSettings,
    Subscribers,
    defaults,
    layers_from_document,
    layers_to_document,
    lookup,
    parse_document,
    render_document,
    split_key,
)
from tests.core.settings.settings_strategies import valid_layers, values

ROOT = Path(__file__).resolve().parents[3]

# The defaults the lead's Policy relies on: these must never drift.
EXPECTED_DEFAULTS: dict[str, Any] = {
    "retry.max_attempts": 5,
    "retry.initial_delay": 0.2,
    "retry.max_delay": 30.0,
    "retry.multiplier": 2.0,
    "retry.backoff": "exponential",
    "retry.jitter": "full",
    "retry.deadline": 30.0,
    "retry.attempt_timeout": None,
    "retry.max_retry_after": 300.0,
    "breaker.enabled": True,
    "breaker.failure_rate": 50.0,
    "breaker.slow_call_rate": 100.0,
    "breaker.slow_call_duration": 60.0,
    "breaker.window_type": "count",
    "breaker.window": 100,
    "breaker.min_calls": 10,
    "breaker.consecutive_failures": 0,
    "breaker.open_seconds": 5.0,
    "breaker.open_seconds_max": 15.0,
    "breaker.open_jitter": 0.5,
    "breaker.half_open_calls": 3,
    "breaker.max_in_flight": 0,
    "budget.enabled": True,
    "budget.ratio": 0.2,
    "budget.min_per_second": 10.0,
    "budget.window": 10.0,
    "throttle.enabled": False,
    "throttle.k": 2.0,
    "throttle.window": 30.0,
    "concurrency.max_in_flight": 0,
    "concurrency.max_waiting": 0,
    "concurrency.queue_timeout": 1.0,
    "concurrency.shared": False,
    "concurrency.lease": 10.0,
    "rate_limit.rate": 0.0,
    "rate_limit.burst": 0,
    "rate_limit.max_wait": 0.0,
    "rate_limit.shared": False,
    "hedge.delay": 1.0,
    "hedge.percentile": 0.0,
    "hedge.max_hedges": 1,
    "chaos.enabled": False,
    "chaos.error_rate": 0.0,
    "chaos.error": "connection",
    "chaos.latency_rate": 0.0,
    "chaos.latency": 1.0,
    "store.backend": "sqlite",
    "store.redis_url": "",
    "store.on_unavailable": "fail-open",
    "store.flush_seconds": 0.05,
    "store.flush_count": 1000,
    "store.staleness": 1.0,
    "manual.mode": "auto",
    "manual.ticket_retention": 30 * 86400.0,
    "display.progress": "auto",
    "display.refresh": 0.1,
    "journal.enabled": True,
    "journal.retention": 7 * 86400.0,
    "run.transient_codes": (75,),
    "run.permanent_codes": (126, 127),
    "run.unknown_codes": "transient",
    "notify.command": "",
    "notify.webhook": "",
}


def test_every_required_key_has_exactly_the_agreed_default() -> None:
    assert defaults() == EXPECTED_DEFAULTS
    for key, setting in SCHEMA.items():
        assert type(setting.default) is type(EXPECTED_DEFAULTS[key]) or setting.default is None, key
        assert setting.help and setting.help.endswith("."), key
        # Every default is itself valid, and reads back from its own text.
        assert setting.validate(setting.default) == setting.default
        assert setting.parse(setting.to_text(setting.default)) == setting.default


@pytest.mark.parametrize(
    ("key", "text", "expected"),
    [
        ("retry.initial_delay", "250ms", 0.25),
        ("retry.initial_delay", "2s", 2.0),
        ("retry.initial_delay", "5m", 300.0),
        ("retry.initial_delay", "1h", 3600.0),
        ("retry.initial_delay", "1.5", 1.5),
        ("retry.initial_delay", " 30 ", 30.0),
        ("manual.ticket_retention", "30d", 30 * 86400.0),
        ("retry.deadline", "off", None),
        ("retry.deadline", "None", None),
        ("retry.deadline", "10s", 10.0),
        ("breaker.enabled", "yes", True),
        ("breaker.enabled", "ON", True),
        ("breaker.enabled", "1", True),
        ("breaker.enabled", "true", True),
        ("breaker.enabled", "no", False),
        ("breaker.enabled", "off", False),
        ("breaker.enabled", "0", False),
        ("breaker.enabled", "False", False),
        ("breaker.failure_rate", "25", 25.0),
        ("breaker.failure_rate", "12.5%", 12.5),
        ("breaker.consecutive_failures", "off", 0),
        ("breaker.max_in_flight", "8", 8),
        ("retry.max_attempts", "1_000", 1000),
        ("retry.backoff", "Linear", "linear"),
        ("run.transient_codes", "75, 69,75", (69, 75)),
        ("run.transient_codes", "", ()),
        ("run.permanent_codes", "126 127", (126, 127)),
        ("store.redis_url", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("store.redis_url", "unix:///run/redis.sock", "unix:///run/redis.sock"),
        ("store.redis_url", "", ""),
        ("notify.webhook", "https://hooks.example/x", "https://hooks.example/x"),
        ("notify.command", "  notify-send 'retry gave up' ", "notify-send 'retry gave up'"),
        ("display.refresh", "20ms", 0.02),
        ("display.refresh", "1s", 1.0),
    ],
)
def test_text_is_parsed_into_typed_values(key: str, text: str, expected: Any) -> None:
    assert SCHEMA[key].parse(text) == expected


@pytest.mark.parametrize(
    ("key", "value", "allowed_fragment"),
    [
        ("retry.max_attempts", "0", "from 1 to 1000000"),
        ("retry.max_attempts", "2.5", "whole number"),
        ("retry.max_attempts", 2.5, "whole number"),
        ("retry.max_attempts", True, "whole number"),
        ("retry.max_attempts", [3], "whole number"),
        ("retry.max_attempts", "five", "whole number"),
        ("retry.max_attempts", 1_000_001, "to 1000000"),
        ("retry.multiplier", "nan", "finite number from 1 to 1000"),
        ("retry.multiplier", math.nan, "finite number"),
        ("retry.multiplier", "inf", "finite number"),
        ("retry.multiplier", "-inf", "finite number"),
        ("retry.multiplier", "1e999", "finite number"),
        ("retry.multiplier", "0.5", "from 1 to 1000"),
        ("retry.multiplier", 1000.5, "from 1 to 1000"),
        ("retry.initial_delay", "-1", "from 0s"),
        ("retry.initial_delay", "-250ms", "duration"),
        ("retry.initial_delay", "soon", "duration"),
        ("retry.initial_delay", "nan", "duration"),
        ("retry.initial_delay", math.inf, "duration"),
        ("retry.initial_delay", "3651d", "up to 3650d"),
        ("retry.initial_delay", "off", "duration"),
        ("retry.initial_delay", None, "duration"),
        ("retry.deadline", "0", "greater than 0s"),
        ("retry.deadline", 0, "greater than 0s"),
        ("display.refresh", "10ms", "from 20ms up to 1s"),
        ("display.refresh", "2s", "from 20ms up to 1s"),
        ("breaker.failure_rate", "0", "percentage from 1 to 100"),
        ("breaker.failure_rate", "101%", "percentage from 1 to 100"),
        ("breaker.failure_rate", "nan%", "percentage"),
        ("budget.ratio", "1.5", "from 0 to 1"),
        ("budget.ratio", "-0.1", "from 0 to 1"),
        ("breaker.enabled", "maybe", "true or false"),
        ("breaker.enabled", 1, "true or false"),
        ("retry.backoff", "fibonacci", "one of constant, linear, exponential"),
        ("retry.jitter", 3, "one of none, full"),
        ("breaker.window", "0", "from 1"),
        ("breaker.half_open_calls", "-3", "from 1"),
        ("run.transient_codes", "75,256", "exit codes from 0 to 255"),
        ("run.transient_codes", "75,x", "exit codes"),
        ("run.transient_codes", "-1", "exit codes"),
        ("run.transient_codes", 75, "exit codes"),
        ("store.redis_url", "http://127.0.0.1", "redis:// or rediss:// or unix://"),
        ("store.redis_url", "redis://", "redis://"),
        ("notify.webhook", "ftp://x", "http:// or https://"),
        ("notify.webhook", "https://a b", "http://"),
        ("notify.command", "echo\x00hi", "control characters"),
        ("notify.command", "x" * 2001, "at most 2000"),
        ("notify.command", 5, "text"),
    ],
)
def test_bad_values_are_refused_naming_key_value_and_allowed(
    key: str, value: Any, allowed_fragment: str
) -> None:
    setting = SCHEMA[key]
    with pytest.raises(ConfigError) as info:
        setting.validate(value)
    exc = info.value
    assert exc.field == key
    assert allowed_fragment in exc.allowed
    message = str(exc)
    assert message.startswith(f"{key}: got ")
    assert repr(value)[:40] in message or str(value)[:40] in message


def test_every_number_setting_refuses_just_outside_its_bounds() -> None:
    checked = 0
    for key, setting in SCHEMA.items():
        if setting.kind not in ("int", "float", "percent", "duration"):
            continue
        low = setting.minimum if setting.minimum is not None else 0.0
        below = low if setting.min_exclusive else math.nextafter(low, -math.inf)
        with pytest.raises(ConfigError, match=re.escape(key)):
            setting.validate(below if setting.kind != "int" else int(low) - 1)
        high = setting.maximum if setting.maximum is not None else 3650 * 86400.0
        with pytest.raises(ConfigError, match=re.escape(key)):
            setting.validate(math.nextafter(high, math.inf) if setting.kind != "int" else int(high) + 1)
        checked += 1
    assert checked >= 20


def test_choice_refusal_suggests_the_closest_choice() -> None:
    with pytest.raises(ConfigError) as info:
        SCHEMA["retry.jitter"].parse("ful")
    assert info.value.hint == "did you mean 'full'?"


@pytest.mark.parametrize(
    ("key", "suggestion"),
    [
        ("retry.max_attempt", "retry.max_attempts"),
        ("max_attempts", "retry.max_attempts"),
        ("breaker.failure_ratio", "breaker.failure_rate"),
        ("retries.max_attempts", "retry.max_attempts"),
        ("breaker.open_second", "breaker.open_seconds"),
    ],
)
def test_unknown_keys_are_refused_with_a_suggestion(key: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as info:
        lookup(key)
    assert info.value.value == key
    assert info.value.hint == f"did you mean {suggestion!r}?"


def test_unknown_key_without_a_close_match_points_at_the_list() -> None:
    with pytest.raises(ConfigError, match="settings list"):
        lookup("zzz")


def test_timedelta_and_typed_values_are_accepted_in_code() -> None:
    assert SCHEMA["retry.max_delay"].validate(timedelta(minutes=2)) == 120.0
    assert SCHEMA["retry.max_attempts"].validate(7.0) == 7
    assert SCHEMA["retry.multiplier"].validate(3) == 3.0
    assert SCHEMA["run.permanent_codes"].validate([127, 126, 127]) == (126, 127)


# -- resolution ------------------------------------------------------------------------------------


def test_resolution_is_default_then_global_then_operation() -> None:
    layers = SettingsLayers.build(
        {"retry.max_attempts": 7, "retry.initial_delay": "1s"},
        {"fetch": {"retry.max_attempts": 2}},
    )
    fetch = layers.resolve("fetch")
    assert (fetch["retry.max_attempts"].value, fetch["retry.max_attempts"].source) == (2, "operation")
    assert (fetch["retry.initial_delay"].value, fetch["retry.initial_delay"].source) == (1.0, "global")
    assert (fetch["retry.max_delay"].value, fetch["retry.max_delay"].source) == (30.0, "default")
    other = layers.effective("other")
    assert other["retry.max_attempts"] == 7
    assert layers.effective(None)["retry.max_attempts"] == 7
    assert set(layers.effective("fetch")) == set(SCHEMA)


def test_operation_keys_split_even_when_the_name_has_dots() -> None:
    assert split_key("operations.api.v2.retry.max_attempts") == ("api.v2", "retry.max_attempts")
    with pytest.raises(ConfigError):
        split_key("operations.retry.max_attempts")
    with pytest.raises(ConfigError, match="operation"):
        split_key("operations.a.retry.max_attempts", "b")


def test_global_only_settings_refuse_an_operation() -> None:
    with pytest.raises(ConfigError, match=r"operations\.fetch\.store\.backend") as info:
        SettingsLayers.build({}, {"fetch": {"store.backend": "redis"}})
    assert "drop --op" in (info.value.hint or "")


@pytest.mark.parametrize("name", ["", " padded", "tab\there", "x" * 201, "\ud800"])
def test_bad_operation_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigError, match="operation"):
        SettingsLayers.build({}, {name: {"retry.max_attempts": 2}})


def test_max_delay_below_initial_delay_is_refused_naming_the_changed_key() -> None:
    layers = SettingsLayers.build({"retry.initial_delay": "1s"})
    with pytest.raises(ConfigError) as info:
        layers.updated("retry.max_delay", "500ms")
    assert info.value.field == "retry.max_delay"
    assert "retry.initial_delay (1s)" in info.value.allowed
    with pytest.raises(ConfigError) as info:
        layers.updated("retry.initial_delay", "1m")
    assert info.value.field == "retry.initial_delay"
    assert "<= retry.max_delay (30s)" in info.value.allowed


def test_a_global_change_that_breaks_an_operation_is_refused() -> None:
    layers = SettingsLayers.build({}, {"slow": {"retry.initial_delay": "20s"}})
    with pytest.raises(ConfigError) as info:
        layers.updated("retry.max_delay", "10s")
    assert info.value.field == "operations.slow.retry.max_delay"
    assert "for operation 'slow'" in (info.value.hint or "")


def test_open_seconds_max_and_exit_code_overlap_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"breaker\.open_seconds_max"):
        SettingsLayers().updated("breaker.open_seconds_max", "3s")  # below the 5 s open_seconds
    with pytest.raises(ConfigError) as info:
        SettingsLayers().updated("run.permanent_codes", "75,126")
    assert info.value.field == "run.permanent_codes"
    assert "75 is in both" in (info.value.hint or "")


def test_build_lists_every_problem_in_notes() -> None:
    with pytest.raises(ConfigError) as info:
        SettingsLayers.build({"retry.max_attempts": 0, "retry.multiplier": "nan", "retry.nope": 1})
    notes = getattr(info.value, "__notes__", [])
    assert len(notes) == 2
    assert any("retry.multiplier" in n for n in notes)
    assert any("retry.nope" in n for n in notes)


# -- documents ----------------------------------------------------------------------------------


def test_document_reading_collects_every_problem_and_accepts_both_shapes() -> None:
    document = {
        "retry": {"max_attempts": 3, "max_delay": "nan", "jitter": "wobbly"},
        "breaker.failure_rate": 40,
        "operations": {"fetch": {"retry": {"initial_delay": "100ms"}}, "bad": 5},
        "nope": {"x": 1},
    }
    layers, problems = layers_from_document(document)
    assert sorted(p.field for p in problems) == ["key", "operations.bad", "retry.jitter", "retry.max_delay"]
    assert layers.values == {"retry.max_attempts": 3, "breaker.failure_rate": 40.0}
    assert layers.operations == {"fetch": {"retry.initial_delay": 0.1}}


def test_a_setting_given_twice_in_one_document_is_a_problem() -> None:
    _, problems = layers_from_document({"retry": {"max_attempts": 3}, "retry.max_attempts": 4})
    assert [p.field for p in problems] == ["retry.max_attempts"]


def test_toml_output_is_readable_and_quotes_odd_names() -> None:
    layers = SettingsLayers.build(
        {"retry.initial_delay": "250ms", "notify.command": 'say "hi"\\now'},
        {"api v2": {"retry.deadline": "off"}, "plain-name": {"retry.max_attempts": 2}},
    )
    text = render_document(layers, "toml", header="exported for a test")
    assert text.splitlines()[0] == "# exported for a test"
    assert "initial_delay = 0.25  # 250ms" in text
    assert '[operations."api v2".retry]' in text
    assert 'deadline = "off"' in text
    assert "[operations.plain-name.retry]" in text
    assert layers_from_document(parse_document(text, "toml")) == (layers, [])


def test_syntax_errors_name_the_source() -> None:
    with pytest.raises(ConfigError, match=r"settings\.toml"):
        parse_document("[retry\n", "toml", source="settings.toml")
    with pytest.raises(ConfigError, match=r"settings\.json"):
        parse_document("{", "json", source="settings.json")
    with pytest.raises(ConfigError, match="JSON object"):
        parse_document("[1]", "json", source="settings.json")


@settings(max_examples=150, deadline=None)
@given(valid_layers(), st.sampled_from(["toml", "json"]))
def test_any_valid_settings_survive_a_document_round_trip(layers: SettingsLayers, fmt: Any) -> None:
    text = render_document(layers, fmt)
    again, problems = layers_from_document(parse_document(text, fmt))
    assert problems == []
    assert again == layers
    assert render_document(again, fmt) == text
    # The plain document is JSON data as it stands.
    assert json.loads(json.dumps(layers_to_document(layers))) == layers_to_document(layers)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(SCHEMA)).flatmap(lambda k: st.tuples(st.just(k), values(SCHEMA[k]))))
def test_any_valid_value_reads_back_from_its_text(pair: tuple[str, Any]) -> None:
    key, value = pair
    setting = SCHEMA[key]
    assert setting.validate(value) == value
    assert setting.parse(setting.to_text(value)) == value
    assert setting.validate(setting.to_plain(value)) == value


# -- sources --------------------------------------------------------------------------------------


def test_static_settings_is_a_settings_source_and_notifies_subscribers() -> None:
    source = StaticSettings({"retry": {"max_attempts": 4}}, operations={"fetch": {"retry.max_attempts": 2}})
    assert isinstance(source, SettingsSource)
    seen: list[int] = []
    stop = source.subscribe(lambda: seen.append(source.effective("fetch")["retry.max_attempts"]))
    source.set("retry.max_attempts", 6, operation="fetch")
    source.reset("operations.fetch.retry.max_attempts")
    stop()
    source.set("retry.max_attempts", 8)
    assert seen == [6, 4]
    assert source.effective("fetch")["retry.max_attempts"] == 8


def test_static_settings_refusal_changes_nothing_and_notifies_nobody() -> None:
    source = StaticSettings({"retry.initial_delay": "1s"})
    before = source.effective()
    calls: list[None] = []
    source.subscribe(lambda: calls.append(None))
    with pytest.raises(ConfigError):
        source.set("retry.max_delay", "100ms")
    with pytest.raises(ConfigError):
        source.set("retry.max_attempts", "nan")
    with pytest.raises(ConfigError):
        source.reset("no.such_key")
    assert source.effective() == before
    assert calls == []


def test_static_settings_constructor_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as info:
        StaticSettings({"retry.max_attempts": "x"}, operations={"f": {"retry.multiplier": 0}})
    assert len(getattr(info.value, "__notes__", [])) == 1


def test_effective_values_are_read_only_and_cached_between_changes() -> None:
    source = StaticSettings()
    first = source.effective("a")
    assert source.effective("a") is first
    with pytest.raises(TypeError):
        first["retry.max_attempts"] = 3  # type: ignore[index]
    source.set("retry.max_attempts", 3)
    assert source.effective("a") is not first
    assert source.effective("a")["retry.max_attempts"] == 3


def test_a_failing_subscriber_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    subs = Subscribers()
    seen: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    subs.add(broken)
    subs.add(lambda: seen.append("ok"))
    subs.notify()
    assert seen == ["ok"]
    assert "boom" in caplog.text


def test_policy_reads_its_values_from_a_static_source_and_follows_changes() -> None:
    source = StaticSettings({"retry.max_attempts": 7}, operations={"fetch": {"retry.deadline": "2s"}})
    policy = Policy("fetch", settings=source)
    try:
        assert policy.config.attempts == 7
        assert policy.config.deadline == 2.0
        source.set("retry.max_attempts", "3", operation="fetch")
        assert policy.config.attempts == 3
        explicit = Policy("fetch", attempts=9, settings=source)
        source.set("retry.max_attempts", "4", operation="fetch")
        assert explicit.config.attempts == 9  # an argument in code wins over every setting
        explicit.close()
    finally:
        policy.close()


# -- the docs table -------------------------------------------------------------------------------


def schema_table() -> str:
    """The reference table of docs/settings.md, generated from the schema."""
    lines = ["| key | default | allowed | per operation | help |", "|---|---|---|---|---|"]
    for key, s in SCHEMA.items():
        default = s.to_text(s.default) or '""'
        scope = "yes" if s.per_operation else "no"
        lines.append(f"| `{key}` | `{default}` | {s.allowed()} | {scope} | {s.help} |")
    return "\n".join(lines)


def test_docs_reference_table_matches_the_schema() -> None:
    page = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    table = schema_table()
    assert table in page, "docs/settings.md is out of date; paste this table:\n" + table


def test_an_operation_open_time_above_the_default_cap_takes_the_cap_with_it() -> None:
    layers = SettingsLayers().updated("breaker.open_seconds", "4m", "slow-db")[0]
    values = layers.effective("slow-db")
    assert (values["breaker.open_seconds"], values["breaker.open_seconds_max"]) == (240.0, 240.0)
    assert layers.effective(None)["breaker.open_seconds_max"] == 15.0  # other operations keep the default
    with pytest.raises(ConfigError, match="open_seconds_max"):
        layers.updated("breaker.open_seconds_max", "1m", "slow-db")  # a cap set below it is still refused


@pytest.mark.parametrize("key", ["breaker.consecutive_failures", "retry.max_attempts", "retry.deadline"])
def test_a_number_too_large_for_a_float_is_refused_with_the_field_named(key: str) -> None:
    # 400 digits typed into a form: beyond any float, so an int comparison must not reach math.isfinite.
    with pytest.raises(ConfigError) as caught:
        lookup(key).parse("9" * 400)
    assert caught.value.field == key and "9" * 20 in str(caught.value)
