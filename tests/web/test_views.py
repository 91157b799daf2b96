"""The dashboard's views are pure functions of a snapshot: what each page shows, and that untrusted text
never becomes markup."""

from __future__ import annotations

import html
import re
import time
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from bounceback.core.settings._source import SCHEMA
from bounceback.web._model import (
    AttemptView,
    BreakerView,
    ChoiceView,
    RunView,
    Snapshot,
    StepView,
    TicketView,
)
from bounceback.web.views._overview import render_overview
from bounceback.web.views._pages import VIEWS, render_full, render_regions
from bounceback.web.views._plot import backoff_plot
from bounceback.web.views._runs import render_recoveries
from bounceback.web.views._settings import render_settings
from bounceback.web.views._text import MAX_TEXT, clean, esc, redact_secrets
from bounceback.web.views._tickets import render_tickets
from bounceback.web.views._timeline import MAX_LANES, render_timeline

NOW = 1_800_000_000.0
EVIL = "<script>alert(1)</script><img src=x onerror=alert(2)>"
CSRF = "csrf-t0k"
# Every element the views may produce; anything else in the output was injected.
ALLOWED_TAGS = {
    "a", "article", "br", "button", "caption", "circle", "code", "div", "footer", "form", "g", "h1", "h2",
    "h3", "header", "html", "head", "body", "input", "label", "li", "line", "link", "main", "meta", "nav",
    "noscript", "ol", "option", "p", "path", "polyline", "progress", "rect", "script", "section", "select",
    "span", "strong", "svg", "table", "tbody", "td", "text", "th", "thead", "title", "tr", "tspan", "ul",
}  # fmt: skip


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.inline_script: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_script.append(data)
        self.text.append(data)


def parse(markup: str) -> _Tags:
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    return parser


def rich_snapshot(error: str = EVIL) -> Snapshot:
    """A snapshot with something on every page, carrying ``error`` in every untrusted field."""
    breakers = (
        BreakerView("payments-db", "open", NOW - 5, NOW + 25, error, 10, 6, consecutive=3, rejected=12),
        BreakerView("cache", "closed", NOW - 500, None, "", 40, 1),
        BreakerView("search", "half_open", NOW - 1, None, "open time over", 4, 4),
        BreakerView("ledger", "forced_open", NOW - 60, None, "forced open from the dashboard", 0, 0),
        BreakerView(error, "disabled", NOW - 60, None, "", 0, 0),
    )
    runs = (
        RunView("r-active", "sync-orders", "running", NOW - 30, NOW - 2, None, 2, 8, NOW + 570, NOW + 18,
                "ConnectionResetError", error, "transient", pid=4242, host="box"),
        RunView("r-cancel", "sync-orders", "running", NOW - 10, NOW - 1, None, 1, 8, None, NOW + 5,
                "OSError", "boom", "transient", pid=4243, host="box", cancel_requested=True),
        RunView("r-done", "fetch-user", "recovered", NOW - 400, NOW - 390, NOW - 390, 3, 5),
        RunView("r-gave", "payments-db", "gave-up", NOW - 300, NOW - 280, NOW - 280, 4, 4,
                last_error_type="ConnectionRefusedError", last_error=error, reason="attempts"),
    )  # fmt: skip
    attempts = {
        "r-gave": (
            AttemptView(
                "r-gave", 1, NOW - 299, 1.0, "failed", "ConnectionRefusedError", error, "transient", 4.0
            ),
            AttemptView("r-gave", 2, NOW - 290, 10.0, "failed", "ConnectionRefusedError", error, "transient"),
        ),
        "r-done": (AttemptView("r-done", 3, NOW - 390, 10.0, "succeeded"),),
    }
    tickets = (
        TicketView(
            "t-open", "read-meter", "open", NOW - 20, "ConnectionRefusedError", error, "transient",
            summary=error,
            guidance=(StepView("service-up", f"Check {error} is up", "worked 2 of 3 times"),),
            choices=(
                ChoiceView("retry", "Retry now", "worked 4 of 5 times"),
                ChoiceView("retry-adjusted", "Retry with 4 attempts", "", "more room", 4, None),
                ChoiceView("abort", "Abort"),
            ),
            attempts=2, reason="attempts",
        ),
        TicketView("t-done", "read-meter", "resolved", NOW - 900, "OSError", error, resolved_at=NOW - 800,
                   resolved_by=error, choice="retry", outcome="succeeded"),
    )  # fmt: skip
    history = (
        {"id": 2, "at": NOW - 5, "who": error, "action": "set", "operation": None, "key": "retry.max_attempts",
         "old": 5, "new": 7, "old_set": False, "new_set": True, "undoes": None},
    )  # fmt: skip
    return Snapshot(
        now=NOW,
        version=3,
        breakers=breakers,
        runs=runs,
        attempts=attempts,
        tickets=tickets,
        settings={None: {"retry.max_attempts": 7}, "sync-orders": {"retry.initial_delay": 0.5}},
        history=history,
        problems=(f"cannot read the tickets: {error}",),
    )


# -- overview ----------------------------------------------------------------------------------------


def test_overview_shows_each_breaker_state_with_the_probe_countdown_and_controls() -> None:
    regions = render_overview(rich_snapshot(), CSRF)
    markup = regions["overview-breakers"]
    row = re.search(r'<tr data-breaker="payments-db".*?</tr>', markup)
    assert row is not None
    assert f'data-until="{NOW + 25:.3f}"' in row.group(0)
    assert "probe in 25 s" in row.group(0)
    assert "60%" in row.group(0) and "of 10 calls" in row.group(0)
    assert "status-half_open" in markup and "half-open" in markup
    assert "forced open" in markup and "until a person closes it" in markup
    for action in ("open", "close", "reset"):
        assert f'name="action" value="{action}"' in markup
    assert markup.count(f'name="csrf" value="{CSRF}"') >= 5
    cards = regions["overview-cards"]
    # Open, forced open and half-open all need a look: counted, and the count links to the table.
    assert '<span class="big">3</span> <a href="#breakers">breakers not closed</a>' in cards
    assert "(1 forced open, 1 open, 1 half-open) of 5" in cards


def test_breakers_that_refuse_or_probe_come_first() -> None:
    names = ["a-closed", "b-open", "c-forced", "d-half", "e-closed"]
    states = ["closed", "open", "forced_open", "half_open", "closed"]
    breakers = tuple(
        BreakerView(n, st, NOW - 5, NOW + 20 if st == "open" else None, "", 0, 0)
        for n, st in zip(names, states, strict=True)
    )
    markup = render_overview(Snapshot(now=NOW, breakers=breakers), CSRF)["overview-breakers"]
    order = re.findall(r'<tr data-breaker="([^"]+)"', markup)
    assert order == ["c-forced", "b-open", "d-half", "a-closed", "e-closed"]


def test_a_closed_breaker_with_failures_says_why_it_stays_closed() -> None:
    few = BreakerView("few", "closed", NOW - 5, None, "", 5, 5, min_calls=10, threshold=50)
    low = BreakerView("low", "closed", NOW - 5, None, "", 20, 4, min_calls=10, threshold=50)
    forced = BreakerView("forced", "forced_open", NOW - 5, None, "forced open", 0, 0)
    markup = render_overview(Snapshot(now=NOW, breakers=(few, low, forced)), CSRF)["overview-breakers"]
    assert "100%" in markup and "of 5 calls" in markup
    assert "stays closed: 5 of the 10 calls needed before the failure rate counts" in markup
    assert "stays closed: 20% is below the 50% that opens it" in markup
    row = re.search(r'<tr data-breaker="forced".*?</tr>', markup)
    assert row is not None and row.group(0).count("forced open") == 1  # not "forced open forced open"
    one = BreakerView("one", "half_open", NOW - 5, None, "1 probes succeeded", 1, 0)
    text = render_overview(Snapshot(now=NOW, breakers=(one,)), CSRF)["overview-breakers"]
    assert "1 probe succeeded" in text and "of 1 call<" in text


def test_overview_lists_operations_with_their_recent_record() -> None:
    markup = render_overview(rich_snapshot(), CSRF)["overview-operations"]
    row = re.search(r'<tr data-operation="sync-orders".*?</tr>', markup)
    assert row is not None and "2 running" in row.group(0)
    gave = re.search(r'<tr data-operation="payments-db".*?</tr>', markup)
    assert gave is not None
    # 1 run, 0 recovered, 1 gave up, 0 running, 2 failed attempts
    assert re.findall(r'<td data-label="[^"]*" class="num">(\d+)</td>', gave.group(0))[:3] == ["1", "0", "1"]


def test_open_breaker_past_its_open_time_says_the_next_call_probes() -> None:
    brk = BreakerView("db", "open", NOW - 40, NOW - 10, "", 10, 6)
    markup = render_overview(Snapshot(now=NOW, breakers=(brk,)), CSRF)["overview-breakers"]
    assert "next call probes" in markup and "probe due" not in markup


# -- active recoveries ------------------------------------------------------------------------------


def test_recoveries_show_progress_countdown_deadline_and_cancel() -> None:
    markup = render_recoveries(rich_snapshot(), CSRF)["recoveries-active"]
    row = re.search(r'<tr data-run="r-active".*?</tr>', markup)
    assert row is not None
    text = row.group(0)
    assert "attempt 2 of 8 failed" in re.sub(r"<[^>]+>", "", text)  # waiting after attempt 2
    assert f'data-until="{NOW + 18:.3f}"' in text and "in 18 s" in text
    assert '<progress class="deadline" max="600.000" value="30.000"' in text and "5% of 10 min" in text
    assert 'name="run_id" value="r-active"' in text and ">Cancel</button>" in text
    pending = re.search(r'<tr data-run="r-cancel".*?</tr>', markup)
    assert pending is not None
    assert "cancel requested" in pending.group(0) and "Cancel</button>" not in pending.group(0)
    assert "no deadline" in pending.group(0)


def test_a_command_at_its_first_attempt_is_running_attempt_1_with_cancel() -> None:
    # A `bounceback run` announced before anything failed: no attempt made yet, no error, no wait.
    run = RunView("c-1", "backup", "running", NOW - 4, NOW - 4, None, 0, 5, deadline_at=NOW + 596)
    snapshot = Snapshot(now=NOW, runs=(run,))
    markup = render_recoveries(snapshot, CSRF)["recoveries-active"]
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", markup))
    assert "attempt 1 of 5 running" in text and "attempt 1 running" in text, text
    assert 'name="run_id" value="c-1"' in markup and ">Cancel</button>" in markup
    assert '<progress max="5" value="1">' in markup
    timeline = render_timeline(snapshot, None)["timeline"]
    assert "attempt 1 running" in timeline and "0 attempts" not in timeline
    overview = render_overview(snapshot, CSRF)["overview-operations"]
    assert '<a href="/recoveries">1 running</a>' in overview


def test_recently_ended_runs_are_listed_newest_first() -> None:
    markup = render_recoveries(rich_snapshot(), CSRF)["recoveries-recent"]
    assert markup.index('data-run="r-gave"') < markup.index('data-run="r-done"')
    assert "(attempts)" in markup


def test_no_active_recovery_says_so() -> None:
    assert "No recovery is running" in render_recoveries(Snapshot(now=NOW), CSRF)["recoveries-active"]


# -- timeline ----------------------------------------------------------------------------------------


def test_timeline_draws_runs_and_attempts_and_filters_by_operation() -> None:
    snap = rich_snapshot()
    both = render_timeline(snap, None)["timeline"]
    every = _wide(both)
    assert both.count('<g class="run') == 2 * len(snap.runs)  # a desk drawing and a phone drawing
    assert every.count('<g class="run') == len(snap.runs)
    assert every.count('class="attempt failed"') == 2 and every.count('class="attempt succeeded"') == 1
    assert every.count('class="wait"') == 1  # only the attempt followed by a wait
    assert every.count('class="next-try"') == 2  # the two running runs
    only = render_timeline(snap, "payments-db")
    assert _wide(only["timeline"]).count('<g class="run') == 1
    assert '<option value="payments-db" selected>' in only["timeline-filter"]
    assert "No recovery run of nobody" in render_timeline(snap, "nobody")["timeline"]


def _wide(markup: str) -> str:
    return markup.split('<svg class="timeline narrow"', 1)[0]


def test_timeline_shows_full_operation_names_and_no_wait_a_cancelled_run_did_not_do() -> None:
    name = "nightly-export-of-the-plant-historian-to-the-warehouse"
    run = RunView("r1", name, "gave-up", NOW - 60, NOW - 50, NOW - 50, 1, 5, reason="cancelled")
    # Attempt 1 failed at NOW-59 with a planned 20 s wait; the run was cancelled 9 s into it.
    att = AttemptView("r1", 1, NOW - 59, 0.5, "failed", "OSError", "refused", "transient", 20.0)
    both = render_timeline(Snapshot(now=NOW, runs=(run,), attempts={"r1": (att,)}), None)["timeline"]
    assert f">{name}</tspan>" in _wide(both) and "more characters" not in both
    wait = re.search(r'<line class="wait" x1="([\d.]+)" x2="([\d.]+)"', _wide(both))
    bar = re.search(r'<rect class="bar" x="([\d.]+)" y="[\d.]+" width="([\d.]+)"', _wide(both))
    assert wait is not None and bar is not None
    bar_end = float(bar.group(1)) + float(bar.group(2))
    assert float(wait.group(2)) <= bar_end + 0.1  # the wait stops where the run ended
    assert "waited 9 s of 20 s, then stopped" in both
    assert 'x="12"' in both  # labels start at the chart's left margin, not left of it


def test_timeline_draws_at_most_the_newest_lanes() -> None:
    runs = tuple(
        RunView(f"r{i}", "op", "recovered", NOW - 1000 + i, NOW - 999 + i, NOW - 999 + i, 2, 5)
        for i in range(MAX_LANES + 7)
    )
    markup = render_timeline(Snapshot(now=NOW, runs=runs), None)["timeline"]
    assert _wide(markup).count('<g class="run') == MAX_LANES
    assert 'data-run="r0"' not in markup and f'data-run="r{MAX_LANES + 6}"' in markup
    assert "7 older runs not drawn" in markup


# -- settings ----------------------------------------------------------------------------------------


def test_settings_form_is_generated_from_the_schema() -> None:
    glob = render_settings(Snapshot(now=NOW), None, CSRF)["settings-form"]
    names = set(re.findall(r'name="v:([a-z_.]+)"', glob))
    assert names == set(SCHEMA)
    per_op = render_settings(Snapshot(now=NOW), "fetch", CSRF)["settings-form"]
    assert set(re.findall(r'name="v:([a-z_.]+)"', per_op)) == {
        k for k, s in SCHEMA.items() if s.per_operation
    }
    # choices become selects with exactly the schema's choices
    jitter = re.search(r'<select name="v:retry.jitter".*?</select>', glob)
    assert jitter is not None
    assert re.findall(r'<option value="([a-z]+)"', jitter.group(0)) == list(SCHEMA["retry.jitter"].choices)
    # the page never lets a person choose the command the machine runs
    command = re.search(r'<input[^>]*name="v:notify.command"[^>]*>', glob)
    assert command is not None and " disabled" in command.group(0)


def test_settings_show_values_with_their_source_and_reset_only_where_stored() -> None:
    snap = rich_snapshot()
    glob = render_settings(snap, None, CSRF)["settings-form"]
    row = re.search(r'<tr class="setting" data-key="retry.max_attempts">.*?</tr>', glob)
    assert row is not None and 'value="7"' in row.group(0) and "source-global" in row.group(0)
    assert 'name="reset" value="retry.max_attempts"' in row.group(0)
    op = render_settings(snap, "sync-orders", CSRF)["settings-form"]
    delay = re.search(r'<tr class="setting" data-key="retry.initial_delay">.*?</tr>', op)
    assert delay is not None and 'value="500ms"' in delay.group(0) and "this operation" in delay.group(0)
    inherited = re.search(r'<tr class="setting" data-key="retry.max_attempts">.*?</tr>', op)
    assert (
        inherited is not None
        and "source-global" in inherited.group(0)
        and "reset</button>" not in inherited.group(0)
    )


def test_settings_errors_are_shown_inline_next_to_their_field() -> None:
    regions = render_settings(
        Snapshot(now=NOW),
        None,
        CSRF,
        errors={"retry.max_attempts": EVIL},
        submitted={"retry.max_attempts": EVIL},
    )
    form = regions["settings-form"]
    row = re.search(r'<tr class="setting invalid" data-key="retry.max_attempts">.*?</tr>', form)
    assert row is not None
    assert 'aria-invalid="true"' in row.group(0) and 'role="alert"' in row.group(0)
    assert html.escape(EVIL, quote=True) in row.group(0)  # the message and the submitted text, as text
    assert "<script>" not in form
    assert "1 value refused; nothing was saved" in form


def test_settings_history_has_undo_buttons_for_the_scope() -> None:
    regions = render_settings(rich_snapshot(), None, CSRF)
    assert 'name="id" value="2"' in regions["settings-history"]
    assert "(not set) → <strong>7</strong>" in regions["settings-history"]
    assert "No changes yet" in render_settings(rich_snapshot(), "sync-orders", CSRF)["settings-history"]


def test_backoff_plot_draws_one_band_per_wait_capped() -> None:
    values = {k: s.default for k, s in SCHEMA.items()}
    assert backoff_plot(values).count('<rect class="band"') == 4
    many = backoff_plot({**values, "retry.max_attempts": 500})
    assert many.count('<rect class="band"') == 12 and "first waits only" in many
    assert "no wait to plot" in backoff_plot({**values, "retry.max_attempts": 1})
    equal = backoff_plot({**values, "retry.jitter": "none", "retry.max_attempts": 3})
    heights = [float(h) for h in re.findall(r'<rect class="band"[^>]*height="([\d.]+)"', equal)]
    assert heights == [1.0, 1.0]  # no jitter: the band is the base line itself
    bad = backoff_plot({**values, "retry.initial_delay": 60.0, "retry.max_delay": 1.0})
    assert "give no schedule" in bad and "<svg" not in bad


# -- tickets -----------------------------------------------------------------------------------------


def test_tickets_show_guidance_ranked_choices_and_resolve_buttons() -> None:
    regions = render_tickets(rich_snapshot(), CSRF)
    card = regions["tickets-open"]
    keys = re.findall(r'<li class="choice" data-choice="([a-z-]+)"', card)
    assert keys == ["retry", "retry-adjusted", "abort"]
    assert 'class="primary">Retry now</button>' in card
    assert "worked 4 of 5 times" in card and "worked 2 of 3 times" in card
    assert 'name="attempts" value="4"' in card
    assert 'name="step" value="service-up"' in card and "not useful" in card
    assert (
        'data-ticket="t-done"' in regions["tickets-resolved"] and "succeeded" in regions["tickets-resolved"]
    )


def test_waiting_tickets_count_in_the_navigation() -> None:
    assert (
        render_regions("overview", rich_snapshot(), None, CSRF)["nav-tickets"]
        == '<span class="badge">1</span>'
    )
    assert render_regions("overview", Snapshot(now=NOW), None, CSRF)["nav-tickets"] == ""


# -- untrusted text ---------------------------------------------------------------------------------


def test_every_page_escapes_untrusted_text_and_has_no_inline_code() -> None:
    snap = rich_snapshot()
    for view in VIEWS:
        page = render_full(view, snap, None, CSRF, database=EVIL, flash=EVIL)
        parsed = parse(page)
        tags = {tag for tag, _ in parsed.tags}
        assert tags <= ALLOWED_TAGS, (view, tags - ALLOWED_TAGS)
        scripts = [attrs for tag, attrs in parsed.tags if tag == "script"]
        assert scripts == [{"src": "/static/app.js", "defer": None}], view
        assert parsed.inline_script == [], view
        for tag, attrs in parsed.tags:
            assert "style" not in attrs, (view, tag)
            assert not [a for a in attrs if a.startswith("on")], (view, tag, attrs)
            assert not [v for v in attrs.values() if v and v.strip().lower().startswith("javascript:")]
        assert "alert(1)" in "".join(parsed.text), view  # shown, as text


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_error_text_never_becomes_markup(text: str) -> None:
    snap = rich_snapshot(error=text)
    for view in VIEWS:
        parsed = parse(render_full(view, snap, None, CSRF))
        assert {tag for tag, _ in parsed.tags} <= ALLOWED_TAGS
        assert len([t for t, _ in parsed.tags if t == "script"]) == 1


def test_long_and_binary_error_text_is_cut_and_made_printable() -> None:
    long = "x" * 100_000
    assert len(clean(long)) < MAX_TEXT + 40 and clean(long).endswith("(99500 more characters)")
    binary = bytes(range(256)) * 4000
    shown = clean(binary)
    assert len(shown) < MAX_TEXT + 40 and "more bytes" in shown
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", shown)
    run = RunView(
        "r", "op", "running", NOW, NOW, None, 1, 3, last_error_type="E", last_error="\x1b[31m" + long
    )
    markup = render_recoveries(Snapshot(now=NOW, runs=(run,)), CSRF)["recoveries-active"]
    assert len(markup) < 5000 and "\x1b" not in markup


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=2000), st.binary(max_size=3000)), st.integers(10, 600))
def test_clean_is_bounded_and_printable(value: str | bytes, limit: int) -> None:
    shown = clean(value, limit)
    assert len(shown) <= limit + 260
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", shown)
    assert "<" not in esc(value, limit) and '"' not in esc(value, limit)


def test_credentials_in_urls_are_redacted_on_the_page() -> None:
    secret = "GET https://ann:hunter2@api.example/v1/items?token=abc123&page=2 failed; password=swordfish"
    assert redact_secrets(secret) == (
        "GET https://***@api.example/v1/items?token=***&page=2 failed; password=***"
    )
    run = RunView(
        "r", "op", "gave-up", NOW - 5, NOW, NOW, 3, 3, last_error_type="HTTPError", last_error=secret
    )
    for view in VIEWS:
        page = render_full(view, Snapshot(now=NOW, runs=(run,)), None, CSRF)
        assert "hunter2" not in page and "abc123" not in page and "swordfish" not in page


def test_enter_in_the_settings_form_saves_and_a_refusal_holds_the_form() -> None:
    snap = Snapshot(now=NOW, settings={None: {"retry.max_attempts": 7}})
    form = render_settings(snap, None, CSRF)["settings-form"]
    buttons = re.findall(r"<button[^>]*>", form)
    # The first submit button of a form is what Enter presses: it must save, not reset a setting.
    assert 'class="enter-saves"' in buttons[0] and "formaction" not in buttons[0]
    assert 'aria-label="Reset retry.max_attempts to the default"' in form and "reset to default" in form
    assert "data-hold" not in form
    refused = render_settings(
        snap, None, CSRF, errors={"retry.jitter": "no"}, submitted={"retry.jitter": "sideways"}
    )["settings-form"]
    assert 'data-hold="refused"' in refused and 'value="sideways"' in refused
    per_op = render_settings(Snapshot(now=NOW, settings={"fetch": {"retry.max_attempts": 3}}), "fetch", CSRF)
    assert "Reset retry.max_attempts to the global value" in per_op["settings-form"]


def test_a_time_on_another_day_carries_its_date() -> None:
    yesterday = BreakerView("db", "forced_open", NOW - 86400 * 2, None, "", 0, 0)
    today = BreakerView("mq", "forced_open", NOW - 60, None, "", 0, 0)
    markup = render_overview(Snapshot(now=NOW, breakers=(yesterday, today)), CSRF)["overview-breakers"]
    dated = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(NOW - 86400 * 2))
    plain_time = time.strftime("%H:%M:%S", time.localtime(NOW - 60))
    assert f'"since">{dated}</td>' in markup and f'"since">{plain_time}</td>' in markup


def test_overview_warns_while_fault_injection_is_on() -> None:
    quiet = render_overview(Snapshot(now=NOW, settings={"pricing": {"chaos.enabled": False}}), CSRF)
    assert "card-chaos" not in quiet["overview-cards"]
    on = render_overview(Snapshot(now=NOW, settings={"pricing": {"chaos.enabled": True}}), CSRF)
    assert 'id="card-chaos"' in on["overview-cards"] and "ON for pricing" in on["overview-cards"]
    everywhere = render_overview(Snapshot(now=NOW, settings={None: {"chaos.enabled": True}}), CSRF)
    assert "ON for every operation" in everywhere["overview-cards"]
