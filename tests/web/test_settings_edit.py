"""Saving the settings form against a real database: all or nothing, only what changed."""

from __future__ import annotations

from pathlib import Path

from bounceback.stores import SqliteSettings
from bounceback.web._settings_edit import apply_form, changed_fields

CSRF = "csrf-t0k"


def _form(values: dict[str, str], shown: dict[str, str], op: str = "") -> dict[str, str]:
    form = {"csrf": CSRF, "op": op}
    for key, text in shown.items():
        form[f"o:{key}"] = text
        form[f"v:{key}"] = values.get(key, text)
    return form


def test_apply_form_refuses_bad_values_and_stores_nothing(tmp_path: Path) -> None:
    with SqliteSettings(tmp_path / "bounceback.db") as store:
        shown = {"retry.max_attempts": "5", "retry.initial_delay": "200ms", "retry.max_delay": "30s"}
        result = apply_form(
            store, None, _form({"retry.max_attempts": "0", "retry.initial_delay": "1s"}, shown)
        )
        assert not result.ok and set(result.errors) == {"retry.max_attempts"}
        assert "expected a whole number from 1" in result.errors["retry.max_attempts"]
        assert store.history() == [] and store.resolve()["retry.initial_delay"].source == "default"
        # a combination that cannot work is refused on the key the person touched
        crossed = apply_form(store, None, _form({"retry.max_delay": "100ms"}, shown))
        assert list(crossed.errors) == ["retry.max_delay"] and store.history() == []
        # the page cannot choose a command to run
        command = apply_form(store, None, _form({"notify.command": "rm -rf /"}, {"notify.command": ""}))
        assert list(command.errors) == ["notify.command"] and store.history() == []


def test_apply_form_stores_only_the_changed_fields(tmp_path: Path) -> None:
    with SqliteSettings(tmp_path / "bounceback.db") as store:
        shown = {"retry.max_attempts": "5", "retry.jitter": "full", "breaker.window": "100"}
        result = apply_form(
            store, "fetch", _form({"retry.max_attempts": " 7 ", "retry.jitter": "equal"}, shown)
        )
        assert result.ok and [c.key for c in result.changes] == ["retry.max_attempts", "retry.jitter"]
        assert store.effective("fetch")["retry.max_attempts"] == 7
        assert store.resolve("fetch")["breaker.window"].source == "default"  # untouched stays a default
        assert store.effective(None)["retry.max_attempts"] == 5
        assert changed_fields(_form({}, shown), None) == {}
