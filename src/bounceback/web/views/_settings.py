"""The settings page: a form generated from the schema (global or one operation), inline validation
messages, the backoff plot of the values in force, and the change history with undo.

The form sends, for every field, the text shown (``o:<key>``) and the text now in the box (``v:<key>``):
only fields whose text changed are stored, so saving never turns a default into an explicit value.
``notify.command`` is shown but cannot be changed here: the dashboard must not be a way to choose what
command the machine runs (set it with ``bounceback settings set``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bounceback.core.settings._source import SCHEMA, Resolved, Setting, SettingsLayers
from bounceback.web._model import Snapshot
from bounceback.web.views._html import attr, post_button
from bounceback.web.views._plot import backoff_plot
from bounceback.web.views._simplot import outage_plot
from bounceback.web.views._text import esc, fmt_clock

__all__ = ["READ_ONLY_KEYS", "layers_of", "render_settings", "settings_query"]

READ_ONLY_KEYS = frozenset({"notify.command"})
"""Keys the dashboard shows but never changes (the page cannot choose a command to run)."""

_SOURCE_TEXT = {"default": "default", "global": "global", "operation": "this operation"}


def layers_of(snapshot: Snapshot) -> SettingsLayers:
    """The stored settings of a snapshot as :class:`SettingsLayers`."""
    global_values = dict(snapshot.settings.get(None, {}))
    operations = {op: dict(values) for op, values in snapshot.settings.items() if op is not None}
    return SettingsLayers(global_values, operations)


def settings_query(operation: str | None) -> str:
    """The query string of the settings page of ``operation`` (empty for global)."""
    from urllib.parse import urlencode

    return urlencode({"op": operation}) if operation else ""


def _scope_keys(operation: str | None) -> list[Setting]:
    return [s for s in SCHEMA.values() if operation is None or s.per_operation]


def _input(setting: Setting, text: str, invalid: bool, describedby: str, disabled: bool) -> str:
    name = attr(f"v:{setting.key}")
    ident = attr(f"f-{setting.key}")
    common = f'name="{name}" id="{ident}" aria-describedby="{attr(describedby)}"'
    if invalid:
        common += ' aria-invalid="true"'
    if disabled:
        common += " disabled"
    if setting.kind in ("choice", "bool"):
        options = list(setting.choices) if setting.kind == "choice" else ["true", "false"]
        if text not in options:
            options.insert(0, text)  # an unexpected submitted value is shown, not silently replaced
        opts = "".join(
            f'<option value="{attr(o)}"{" selected" if o == text else ""}>{esc(o)}</option>' for o in options
        )
        return f"<select {common}>{opts}</select>"
    mode = ' inputmode="numeric"' if setting.kind in ("int", "codes") else ""
    mode = ' inputmode="decimal"' if setting.kind in ("float", "percent") else mode
    return f'<input type="text" {common} value="{attr(text)}" spellcheck="false" autocomplete="off"{mode}>'


def _row(
    setting: Setting,
    resolved: Resolved,
    operation: str | None,
    errors: Mapping[str, str],
    submitted: Mapping[str, str],
) -> str:
    key = setting.key
    shown = resolved.text
    text = submitted.get(key, shown)
    error = errors.get(key, "")
    help_id, err_id = f"h-{key}", f"e-{key}"
    read_only = key in READ_ONLY_KEYS
    stored_here = resolved.source == ("operation" if operation else "global")
    unit = f' <span class="unit">{esc(setting.unit)}</span>' if setting.unit else ""
    reset = ""
    if stored_here and not read_only:
        below = "the global value" if operation else "the default"
        reset = (
            f'<button type="submit" class="quiet reset" name="reset" value="{attr(key)}" '
            f'formaction="/settings/reset" aria-label="{attr(f"Reset {key} to {below}")}" '
            f'title="{attr(f"Remove this value of {key} so {below} applies")}">reset to '
            f"{'global' if operation else 'default'}</button>"
        )
    note = (
        ' <span class="note">change it with <code>bounceback settings set</code></span>' if read_only else ""
    )
    return (
        f'<tr class="setting{" invalid" if error else ""}" data-key="{attr(key)}">'
        f'<th scope="row"><label for="{attr("f-" + key)}">{esc(key)}</label>{unit}'
        f'<p class="help" id="{attr(help_id)}">{esc(setting.help)}{note}</p></th>'
        f'<td><input type="hidden" name="{attr("o:" + key)}" value="{attr(shown)}">'
        f"{_input(setting, text, bool(error), help_id + ' ' + err_id, read_only)}"
        f'<p class="field-error" id="{attr(err_id)}" role="alert">{esc(error)}</p></td>'
        f'<td><span class="source source-{attr(resolved.source)}">{_SOURCE_TEXT[resolved.source]}</span>'
        f"{reset}</td></tr>"
    )


def _scope_nav(snapshot: Snapshot, operation: str | None) -> str:
    links = ['<a href="/settings"' + (' aria-current="true"' if operation is None else "") + ">global</a>"]
    names = set(snapshot.operations) | ({operation} if operation else set())
    for name in sorted(names):
        current = ' aria-current="true"' if name == operation else ""
        links.append(f'<a href="/settings?{attr(settings_query(name))}"{current}>{esc(name)}</a>')
    return (
        '<nav class="scopes" aria-label="Settings scope">'
        + "".join(links)
        + '<form method="get" action="/settings" class="inline"><label>operation '
        '<input type="text" name="op" size="14" placeholder="name" required></label>'
        "<button>Open</button></form></nav>"
    )


def _history(snapshot: Snapshot, operation: str | None, csrf: str) -> str:
    wanted = operation or None
    rows = []
    for change in snapshot.history:
        if (change.get("operation") or None) != wanted:
            continue
        key = str(change["key"])
        setting = SCHEMA.get(key)

        def text(which: str, change: Mapping[str, Any] = change, setting: Setting | None = setting) -> str:
            if not change[f"{which}_set"]:
                return "(not set)"
            value = change[which]
            try:
                return setting.to_text(setting.validate(value)) if setting else str(value)
            except Exception:
                return str(value)

        undo = post_button(
            "/settings/undo",
            "Undo",
            csrf,
            hidden={"id": str(change["id"]), "op": operation or ""},
            css="quiet",
        )
        rows.append(
            f'<tr data-change="{int(change["id"])}"><td class="num">#{int(change["id"])}</td>'
            f"<td><code>{esc(key)}</code> {esc(text('old'))} → <strong>{esc(text('new'))}</strong>"
            f'<span class="sub"><br>{esc(change["action"])} by {esc(change["who"])} at '
            f'{esc(fmt_clock(change["at"], snapshot.now))}</span></td><td class="controls">{undo}</td></tr>'
        )
        if len(rows) >= 25:
            break
    if not rows:
        return '<p class="empty">No changes yet.</p>'
    return f'<table class="history"><tbody>{"".join(rows)}</tbody></table>'


def render_settings(
    snapshot: Snapshot,
    operation: str | None,
    csrf: str,
    *,
    errors: Mapping[str, str] | None = None,
    submitted: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The regions of the settings page of ``operation`` (None: global), by region id.

    ``errors`` maps keys to messages shown next to their fields; ``submitted`` the texts to show back in
    the boxes after a refused save.

    >>> from bounceback.web._model import Snapshot
    >>> regions = render_settings(Snapshot(now=0.0), None, "t0k", errors={"retry.max_attempts": "too <big>"})
    >>> sorted(regions), "too &lt;big&gt;" in regions["settings-form"]
    (['settings-form', 'settings-history', 'settings-plot', 'settings-scope', 'settings-sim'], True)
    """
    errors = errors or {}
    submitted = submitted or {}
    layers = layers_of(snapshot)
    resolved = layers.resolve(operation)
    sections: dict[str, list[str]] = {}
    for setting in _scope_keys(operation):
        sections.setdefault(setting.section, []).append(
            _row(setting, resolved[setting.key], operation, errors, submitted)
        )
    body = "".join(
        f'<tbody class="section"><tr><th colspan="3" class="section-title">{esc(name)}</th></tr>'
        f"{''.join(rows)}</tbody>"
        for name, rows in sections.items()
    )
    scope = f"operation <strong>{esc(operation)}</strong>" if operation else "<strong>all operations</strong>"
    summary = ""
    if errors:
        count = len(errors)
        summary = (
            f'<p class="form-error" role="alert">{count} value{"s" if count > 1 else ""} refused; '
            "nothing was saved. Fix the fields marked below.</p>"
        )
    # A refused save holds the form (data-hold): live re-renders must not wipe the error and the typed
    # values until the person saves again. The first submit button of a form is what Enter presses: a
    # hidden Save comes first, so Enter in any field saves and never resets another setting.
    hold = ' data-hold="refused"' if errors else ""
    form = (
        f"{summary}"
        f'<form method="post" action="/settings" class="settings" novalidate{hold}>'
        '<button type="submit" class="enter-saves" tabindex="-1" aria-hidden="true">Save</button>'
        f'<input type="hidden" name="csrf" value="{attr(csrf)}">'
        f'<input type="hidden" name="op" value="{attr(operation or "")}">'
        f'<table class="settings-table"><caption>Values for {scope}</caption>{body}</table>'
        '<p class="actions"><button type="submit" class="primary">Save changes</button></p></form>'
    )
    effective = {k: r.value for k, r in resolved.items()}
    return {
        "settings-scope": _scope_nav(snapshot, operation),
        "settings-form": form,
        "settings-plot": backoff_plot(effective),
        "settings-sim": outage_plot(effective),
        "settings-history": _history(snapshot, operation, csrf),
    }


def settings_body(regions: Mapping[str, str], operation: str | None) -> str:
    """Lay the regions of :func:`render_settings` out as the page body."""
    title = f"Settings for {esc(operation)}" if operation else "Settings"
    return (
        f"<h1>{title}</h1>"
        f'<div id="settings-scope" data-live>{regions["settings-scope"]}</div>'
        '<div class="columns"><section class="wide">'
        f'<div id="settings-form" data-live>{regions["settings-form"]}</div></section>'
        '<section class="side"><h2>Backoff schedule</h2>'
        f'<div id="settings-plot" data-live data-follows="settings-form">{regions["settings-plot"]}</div>'
        "<h2>Through an outage (simulated)</h2>"
        f'<div id="settings-sim" data-live data-follows="settings-form">{regions["settings-sim"]}</div>'
        "<h2>History</h2>"
        f'<div id="settings-history" data-live>{regions["settings-history"]}</div></section></div>'
    )
