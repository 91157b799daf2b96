"""Recovery tickets: guidance from the error's facts, ranking by outcomes, and each way a ticket is handled."""

from __future__ import annotations

import asyncio
import email.message
import io
import re
import socket
import ssl
import subprocess
import urllib.error
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from bounceback import (
    CancelToken,
    ConfigError,
    GiveUp,
    Policy,
    RecoveryCancelled,
    RecoveryRequired,
    RetriesExhausted,
    RetryAgain,
)
from bounceback.console import TerminalPrompter
from bounceback.core.classify._facts import clean_text, error_facts
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.policy._manual import PASS, ManualRecovery, chain
from bounceback.core.recovery._guidance import GuidanceCatalog, Step
from bounceback.core.recovery._ports import MemoryTickets
from bounceback.core.recovery._tickets import ChoiceKind, Record, Ticket, open_ticket, rank
from bounceback.core.settings._source import StaticSettings
from bounceback.errors import CircuitOpenError
from bounceback.events import EventBus, TicketOpened, TicketResolved
from bounceback.testing import FakeClock, RecordingSink

NOW = 1_800_000_000.0


def give_up(error: BaseException | None, reason: str = "attempts", op: str = "fetch", **kw: Any) -> GiveUp:
    verdict = DEFAULT_CLASSIFIER.classify(error) if error is not None else None
    return GiveUp(
        op, error, reason, (), verdict, "run-1", kw.pop("elapsed", 3.0), None, kw.pop("result", None)
    )


def http_error(
    status: int, url: str = "https://api.example.com/v1/items", retry_after: str | None = None
) -> Any:
    headers = email.message.Message()
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return urllib.error.HTTPError(url, status, "status", headers, io.BytesIO())


class Flaky:
    """Fails ``failures`` times with ``error`` (a factory), then returns ``value``."""

    def __init__(self, failures: int, error: Any = None, value: Any = "ok") -> None:
        self.failures = failures
        self.error = error or (lambda: ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 8080)"))
        self.value = value
        self.calls = 0

    def __call__(self) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error()
        return self.value


def prompter(answers: str, width: int = 120) -> tuple[TerminalPrompter, io.StringIO]:
    """The real terminal prompter, reading scripted answers and drawing into a string."""
    out = io.StringIO()
    return TerminalPrompter(Console(file=out, width=width), input=io.StringIO(answers), who="ann"), out


# -- guidance from the error ------------------------------------------------------------------------


CASES = [
    (
        ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 8080)"),
        "connection-refused",
        "Check that the service (or device) at 10.0.0.7:8080 is running",
    ),
    (http_error(429, retry_after="120"), "throttled", "it may be tried again at"),
    (http_error(401), "authentication", "The service answered HTTP 401 (Unauthorized)"),
    (http_error(403), "authentication", "HTTP 403"),
    (
        OSError(28, "No space left on device", "/var/lib/app/data.db"),
        "disk-full",
        "holds /var/lib/app/data.db",
    ),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "dns", "host name"),
    (TimeoutError("timed out talking to db.internal:5432"), "timeout", "db.internal:5432 is reachable"),
    (
        ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate"),
        "tls",
        "certificate",
    ),
    (
        PermissionError(13, "Permission denied", "/etc/app/secret.key"),
        "permission",
        "access /etc/app/secret.key",
    ),
    (
        FileNotFoundError(2, "No such file or directory", "/data/in.csv"),
        "not-found",
        "Check that /data/in.csv exists",
    ),
    (http_error(404, "https://api.example.com/v1/gone"), "not-found", "https://api.example.com/v1/gone"),
    (subprocess.CalledProcessError(127, ["rsync", "-a", "src/", "dst/"]), "not-found", "rsync -a src/ dst/"),
    (subprocess.CalledProcessError(3, ["./sync.sh", "--all"]), "command-failed", "exited with code 3"),
    (http_error(500), "server-error", "HTTP 500 (Internal Server Error)"),
    (ConnectionResetError(104, "Connection reset by peer"), "network", "reset or dropped"),
    (
        CircuitOpenError("payments", "open", NOW + 42, 42.0),
        "breaker-open",
        "The circuit payments is open after repeated failures; it lets a probe through at",
    ),
    (
        CircuitOpenError("payments", "forced_open", None, None),
        "breaker-open",
        "bounceback breaker close payments",
    ),
    (RuntimeError("boom"), "other", "logs of fetch"),
]


@pytest.mark.parametrize(
    ("error", "topic", "text"), CASES, ids=[c[1] + "-" + type(c[0]).__name__ for c in CASES]
)
def test_each_topic_gets_concrete_steps_filled_from_the_error(
    error: BaseException, topic: str, text: str
) -> None:
    ticket = open_ticket(give_up(error), now=NOW)
    assert ticket.topic == topic
    shown = "\n".join(s.text for s in ticket.guidance)
    assert text in shown
    assert "{" not in shown and "}" not in shown  # no placeholder left unfilled


def test_placeholders_come_from_attributes_url_and_message() -> None:
    throttled = http_error(429, "https://api.example.com:8443/v1/items?x=1", retry_after="90")
    facts = error_facts(throttled, DEFAULT_CLASSIFIER.classify(throttled), now=NOW)
    assert facts["host"] == "api.example.com"
    assert facts["port"] == "8443"
    assert facts["path"] == "/v1/items?x=1"
    assert facts["status"] == "429"
    assert facts["status_text"] == "Too Many Requests"
    assert facts["retry_in"] == "1 min 30 s"
    assert float(facts["retry_at_epoch"]) == NOW + 90
    wrapped = RuntimeError("upload failed")
    wrapped.__cause__ = ConnectionRefusedError(
        111, "HTTPConnectionPool(host='nas.local', port=5000): refused"
    )
    facts = error_facts(wrapped, now=NOW)
    assert (facts["host"], facts["port"], facts["errno"]) == ("nas.local", "5000", "ECONNREFUSED")
    # a time of day is not an address
    assert "host" not in error_facts(RuntimeError("failed at 12:03:04"), now=NOW)


def test_throttled_ticket_says_when_it_may_be_tried_again_and_suggests_a_deadline_past_it() -> None:
    ticket = open_ticket(give_up(http_error(429, retry_after="120"), reason="retry-after"), now=NOW)
    assert ticket.retry_at == NOW + 120
    assert "(in 2 min)" in ticket.guidance[0].text
    adjusted = ticket.choice("retry-adjusted")
    assert adjusted.deadline is not None and adjusted.deadline >= 120
    assert any(s.key == "retry-after" for s in ticket.guidance)


def test_a_step_whose_facts_are_unknown_uses_its_general_wording_or_is_left_out() -> None:
    ticket = open_ticket(give_up(ConnectionRefusedError(111, "Connection refused")), now=NOW)
    texts = [s.text for s in ticket.guidance]
    assert texts[0].startswith("Check that the service (or device) is running")
    assert texts[2] == "Check that no firewall, VPN or container network rule blocks the connection."
    catalog = GuidanceCatalog(builtins=False)
    catalog.add_steps("*", Step("only-with-host", "Ping {host}."))
    assert open_ticket(give_up(RuntimeError("x")), now=NOW, catalog=catalog).guidance == ()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300), st.sampled_from([ConnectionRefusedError, TimeoutError, RuntimeError, OSError]))
def test_guidance_never_shows_raw_placeholders_or_control_characters(message: str, kind: type) -> None:
    ticket = open_ticket(give_up(kind(message)), now=NOW)
    for step in ticket.guidance:
        leftover = re.findall(r"\{([a-z_]+)\}", step.text)
        assert all(f"{{{name}}}" in message for name in leftover)  # only what the message itself said
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", step.text)
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", ticket.error_message.replace("\n", ""))


def test_cancelled_ticket_offers_the_choices_with_a_step_saying_a_person_cancelled() -> None:
    ticket = open_ticket(give_up(ConnectionRefusedError(111, "refused"), reason="cancelled"), now=NOW)
    assert ticket.topic == "connection-refused"
    assert any(s.key == "cancelled" and "A person cancelled" in s.text for s in ticket.guidance)
    assert [c.key for c in ticket.choices] == ["retry", "retry-adjusted", "abort"]


def test_untrusted_text_is_stripped_of_control_and_bidi_characters() -> None:
    nasty = "\x1b[2J\x1b[31mred\x07 \u202eevil\u202c [bold]x[/] <script>alert(1)</script>"
    assert clean_text(nasty) == "[2J[31mred evil [bold]x[/] <script>alert(1)</script>"
    ticket = open_ticket(give_up(RuntimeError(nasty)), now=NOW)
    assert "\x1b" not in ticket.error_message and "<script>alert(1)</script>" in ticket.error_message


# -- the catalog is extended per topic, per type and per operation -------------------------------------


class DeviceOffline(Exception):
    pass


def test_programs_add_topics_and_steps_which_come_first() -> None:
    catalog = GuidanceCatalog()
    catalog.add_topic(
        "device-offline", DeviceOffline, "Power-cycle the meter in cabinet {host}.", "Call the site."
    )
    catalog.add_steps(ConnectionRefusedError, Step("vpn", "Is the VPN up?"))
    catalog.add_steps("connection-refused", "Is the modbus gateway on?", operation="read-meter")
    catalog.add_steps("*", "Tell the on-call engineer.", operation="read-meter")
    ticket = open_ticket(
        give_up(DeviceOffline("offline: host=cab7.local, port=502")), now=NOW, catalog=catalog
    )
    assert ticket.topic == "device-offline"
    assert [s.text for s in ticket.guidance][:2] == [
        "Power-cycle the meter in cabinet cab7.local.",
        "Call the site.",
    ]
    refused = ConnectionRefusedError(111, "refused")
    keys = [s.key for s in open_ticket(give_up(refused, op="read-meter"), now=NOW, catalog=catalog).guidance]
    assert keys[:4] == ["is-the-modbus-gateway-on", "vpn", "tell-the-on-call-engineer", "service-up"]
    other = [s.key for s in open_ticket(give_up(refused, op="other-op"), now=NOW, catalog=catalog).guidance]
    assert other[:2] == ["vpn", "service-up"]


@pytest.mark.parametrize(
    "text", ["{host.__class__}", "{0}", "{host!r}", "{port:>10}", "unbalanced {host"], ids=str
)
def test_templates_may_only_name_plain_placeholders(text: str) -> None:
    with pytest.raises(ConfigError):
        Step("x", text)


def test_bad_keys_topics_and_matchers_are_refused() -> None:
    catalog = GuidanceCatalog()
    with pytest.raises(ConfigError, match="key"):
        Step("Has Spaces", "text")
    with pytest.raises(ConfigError, match="topic"):
        catalog.add_topic("Bad Topic", DeviceOffline)
    with pytest.raises(ConfigError, match="match"):
        catalog.add_topic("ok-topic", 42)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="steps"):
        catalog.add_steps("ok-topic")


def test_a_failing_program_matcher_does_not_hide_the_ticket() -> None:
    catalog = GuidanceCatalog()
    catalog.add_topic("broken", lambda exc, facts: 1 / 0 > 0)
    assert open_ticket(give_up(TimeoutError()), now=NOW, catalog=catalog).topic == "timeout"


# -- ranking ------------------------------------------------------------------------------------------


def test_ranking_puts_what_worked_first_and_shows_the_record() -> None:
    ticket = open_ticket(give_up(ConnectionRefusedError(111, "refused")), now=NOW)
    assert [s.key for s in ticket.guidance] == ["service-up", "address", "firewall"]
    stats = {
        "step:firewall": Record(5, 4),
        "step:service-up": Record(3, 0),
        "step:address": Record(0, 0, 2),
        "choice:retry": Record(4, 1),
        "choice:retry-adjusted": Record(5, 4),
    }
    ranked = rank(ticket, stats)
    assert [s.key for s in ranked.guidance] == ["firewall", "address", "service-up"]
    assert ranked.guidance[0].record.text() == "worked 4 of 5 times"
    assert ranked.guidance[1].record.text() == "marked not useful 2 times"
    assert [c.key for c in ranked.choices] == ["retry-adjusted", "retry", "abort"]
    assert ranked.choices[0].record.text() == "worked 4 of 5 times"


def test_skip_keeps_a_neutral_rank_and_abort_is_always_last() -> None:
    ticket = open_ticket(give_up(TimeoutError()), now=NOW, can_skip=True)
    ranked = rank(ticket, {"choice:retry": Record(5, 0), "choice:retry-adjusted": Record(6, 1)})
    assert [c.key for c in ranked.choices] == ["skip", "retry-adjusted", "retry", "abort"]
    assert (
        Record().score == 0.5 and Record(10, 8).score > Record(1, 1).score
    )  # a long record beats one lucky try


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 20), st.integers(0, 5)), min_size=1, max_size=6))
def test_ranking_is_sorted_by_score_and_keeps_every_item(records: list[tuple[int, int, int]]) -> None:
    catalog = GuidanceCatalog(builtins=False)
    catalog.add_steps("*", *(Step(f"s{i}", f"step {i}") for i in range(len(records))))
    ticket = open_ticket(give_up(RuntimeError("x")), now=NOW, catalog=catalog)
    stats = {f"step:s{i}": Record(t, min(w, t), n) for i, (t, w, n) in enumerate(records)}
    ranked = rank(ticket, stats)
    scores = [s.record.score for s in ranked.guidance]
    assert scores == sorted(scores, reverse=True)
    assert sorted(s.key for s in ranked.guidance) == sorted(s.key for s in ticket.guidance)


# -- decisions ----------------------------------------------------------------------------------------


def test_decide_checks_the_answer_against_the_ticket() -> None:
    ticket = open_ticket(give_up(ConnectionRefusedError(111, "refused")), now=NOW)
    res = ticket.decide("retry-adjusted", by="ann", at=NOW, attempts=9, did=["1", "firewall"], not_useful=[2])
    assert (res.attempts, res.did, res.not_useful) == (9, ("service-up", "firewall"), ("address",))
    assert (
        ticket.decide("retry-adjusted", by="ann", at=NOW).attempts == ticket.choice("retry-adjusted").attempts
    )
    with pytest.raises(ConfigError, match="skip needs a fallback value"):
        ticket.decide("skip", by="ann", at=NOW)
    with pytest.raises(ConfigError, match="one of retry, retry-adjusted, skip, abort"):
        ticket.decide("retry-later", by="ann", at=NOW)
    with pytest.raises(ConfigError, match="no limits unless"):
        ticket.decide("retry", by="ann", at=NOW, attempts=3)
    with pytest.raises(ConfigError, match="attempts"):
        ticket.decide("retry-adjusted", by="ann", at=NOW, attempts=0)
    with pytest.raises(ConfigError, match="deadline"):
        ticket.decide("retry-adjusted", by="ann", at=NOW, deadline=-1)
    with pytest.raises(ConfigError, match="step number 1-3"):
        ticket.decide("retry", by="ann", at=NOW, did=["7"])
    with pytest.raises(ConfigError, match="no value unless"):
        ticket.decide("abort", by="ann", at=NOW, value=1, has_value=True)


def test_ticket_round_trips_through_its_dict() -> None:
    ticket = open_ticket(give_up(http_error(429, retry_after="5")), now=NOW, can_skip=True)
    resolved = Ticket.from_dict(
        {
            **ticket.to_dict(),
            "status": "resolved",
            "resolution": ticket.decide("skip", by="bo", at=NOW).to_dict(),
        }
    )
    assert Ticket.from_dict(ticket.to_dict()) == ticket
    assert resolved.resolution is not None and resolved.resolution.choice is ChoiceKind.SKIP


# -- the handlers -------------------------------------------------------------------------------------


def test_raise_mode_raises_recovery_required_with_the_ticket_and_the_original_cause() -> None:
    bus = EventBus()
    with RecordingSink(bus) as sink:
        policy = Policy(
            "read-meter", attempts=3, clock=FakeClock(), bus=bus, fallback=ManualRecovery("raise", bus=bus)
        )
        flaky = Flaky(99)
        with pytest.raises(RecoveryRequired) as caught:
            policy.call(flaky)
    ticket = caught.value.ticket
    assert isinstance(ticket, Ticket) and ticket.operation == "read-meter" and flaky.calls == 3
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert (
        len(ticket.attempts) == 3
        and ticket.attempts[0].delay is not None
        and ticket.attempts[-1].delay is None
    )
    assert "a person must decide" in str(caught.value) and ticket.id in str(caught.value)
    assert "1. Check that the service (or device) at 10.0.0.7:8080" in caught.value.__notes__[-1]
    assert [e.ticket_id for e in sink.of(TicketOpened)] == [ticket.id]


def test_prompt_retry_runs_again_and_the_outcome_is_learned() -> None:
    store = MemoryTickets()
    answers, out = prompter("1\n1\n")  # retry now; I took step 1
    flaky = Flaky(3)
    policy = Policy(
        "sync",
        attempts=3,
        clock=FakeClock(),
        fallback=ManualRecovery("prompt", prompter=answers, store=store),
    )
    assert policy.call(flaky) == "ok" and flaky.calls == 4
    (ticket,) = store.list()
    assert ticket.resolution is not None and ticket.resolution.outcome == "succeeded"
    assert ticket.resolution.did == ("service-up",) and ticket.resolution.by == "ann"
    stats = store.stats("sync", "connection-refused")
    assert stats["choice:retry"] == Record(1, 1) and stats["step:service-up"] == Record(1, 1)
    assert "What to check" in out.getvalue()


def test_a_failed_follow_up_is_recorded_and_opens_a_new_ticket() -> None:
    store = MemoryTickets()
    answers, _ = prompter("2\n2\n\n\n3\n")  # retry with 2 attempts (fails), then abort
    flaky = Flaky(99)
    policy = Policy(
        "sync",
        attempts=3,
        clock=FakeClock(),
        fallback=ManualRecovery("prompt", prompter=answers, store=store),
    )
    with pytest.raises(ConnectionRefusedError) as caught:
        policy.call(flaky)
    assert flaky.calls == 3 + 2
    first, second = store.list()
    assert (
        first.resolution is not None
        and first.resolution.outcome == "failed"
        and first.resolution.attempts == 2
    )
    assert second.resolution is not None and second.resolution.choice is ChoiceKind.ABORT
    assert store.stats("sync", "connection-refused")["choice:retry-adjusted"] == Record(1, 0)
    assert any("ann@" in n or "ann chose abort" in n for n in caught.value.__notes__)


def test_rankings_reorder_the_next_prompt() -> None:
    store, clock = MemoryTickets(), FakeClock()

    def person_resolves(seconds: float) -> None:
        # Numbers move as the ranking learns, so this person answers by key: retry-adjusted after the firewall.
        for ticket in store.list(status="open"):
            store.resolve(
                ticket.id, ticket.decide("retry-adjusted", by="bo", at=clock.wall(), did=["firewall"])
            )

    clock.on_sleep = person_resolves
    for _ in range(3):
        recovery = ManualRecovery("park", store=store, wait=60, clock=clock)
        assert Policy("sync", attempts=2, clock=FakeClock(), fallback=recovery).call(Flaky(2)) == "ok"
    answers, out = prompter("3\n", width=200)
    with pytest.raises(ConnectionRefusedError):
        Policy(
            "sync",
            attempts=2,
            clock=FakeClock(),
            fallback=ManualRecovery("prompt", prompter=answers, store=store),
        ).call(Flaky(9))
    screen = out.getvalue()
    assert re.search(r"1\. Check that no firewall.*\(worked 3 of 3 times\)", screen)
    assert re.search(r"\[1\] Retry with 4 attempts.*\(worked 3 of 3 times\)", screen)
    assert "[3] Abort" in screen and "decision: abort" in screen


def test_skip_uses_the_program_value_or_the_person_value() -> None:
    answers, _ = prompter("3\n")
    policy = Policy(
        "sync",
        attempts=2,
        clock=FakeClock(),
        fallback=ManualRecovery("prompt", prompter=answers, skip={"cached": True}),
    )
    assert policy.call(Flaky(9)) == {"cached": True}
    answers, _ = prompter("3\n")
    fn = ManualRecovery("prompt", prompter=answers, skip=lambda info: f"stale after {len(info.attempts)}")
    assert Policy("sync", attempts=2, clock=FakeClock(), fallback=fn).call(Flaky(9)) == "stale after 2"


def test_abort_ends_the_call_as_without_a_fallback() -> None:
    answers, _ = prompter("3\n")
    with pytest.raises(RetriesExhausted):
        Policy(
            "poll",
            attempts=2,
            retry_if_result=lambda r: r == "busy",
            clock=FakeClock(),
            fallback=ManualRecovery("prompt", prompter=answers),
        ).call(lambda: "busy")
    answers, _ = prompter("")  # the input ended: abort
    with pytest.raises(ConnectionRefusedError):
        Policy(
            "sync", attempts=2, clock=FakeClock(), fallback=ManualRecovery("prompt", prompter=answers)
        ).call(Flaky(9))


def test_a_person_cancelling_a_wait_goes_straight_to_the_choices() -> None:
    clock, token = FakeClock(), CancelToken()
    clock.on_sleep = lambda seconds: token.cancel("operator pressed Cancel")
    answers, out = prompter("4\n")
    flaky = Flaky(99)
    policy = Policy(
        "sync", attempts=10, clock=clock, cancel=token, fallback=ManualRecovery("prompt", prompter=answers)
    )
    with pytest.raises(RecoveryCancelled):
        policy.call(flaky)
    assert flaky.calls == 1
    assert "a person cancelled the automatic recovery" in out.getvalue()
    assert "A person cancelled the automatic recovery: once the cause is dealt with" in out.getvalue()


def test_park_raises_at_once_and_waits_when_asked() -> None:
    store = MemoryTickets()
    with pytest.raises(RecoveryRequired, match="parked as ticket") as caught:
        Policy("sync", attempts=2, clock=FakeClock(), fallback=ManualRecovery("park", store=store)).call(
            Flaky(9)
        )
    assert store.get(caught.value.ticket.id).is_open

    clock = FakeClock()
    waits: list[float] = []

    def someone_resolves(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:  # a person resolves it on the dashboard while the program waits
            (ticket,) = store.list(status="open")[-1:]
            store.resolve(ticket.id, ticket.decide("retry-adjusted", by="bo", at=clock.wall(), attempts=5))

    recovery = ManualRecovery("park", store=store, wait=600, poll=2, clock=clock)
    flaky = Flaky(3)
    policy = Policy("sync", attempts=2, clock=FakeClock(), fallback=recovery)
    clock.on_sleep = someone_resolves
    assert policy.call(flaky) == "ok" and flaky.calls == 4
    assert waits == [2, 2, 2]
    resolved = store.list(status="resolved")
    assert resolved[0].resolution is not None and resolved[0].resolution.outcome == "succeeded"


def test_park_wait_gives_up_after_its_time() -> None:
    store, clock = MemoryTickets(), FakeClock()
    recovery = ManualRecovery("park", store=store, wait=5, poll=2, clock=clock)
    with pytest.raises(RecoveryRequired, match="parked"):
        Policy("sync", attempts=2, clock=FakeClock(), fallback=recovery).call(Flaky(9))
    assert clock.sleeps == [2, 2, 1]


def test_mode_comes_from_settings_and_auto_falls_back_to_what_is_available() -> None:
    store = MemoryTickets()
    settings = StaticSettings({"manual.mode": "raise"}, operations={"nightly": {"manual.mode": "park"}})
    recovery = ManualRecovery(store=store, settings=settings)
    assert recovery.mode_for("any") == "raise" and recovery.mode_for("nightly") == "park"
    answers, _ = prompter("")  # a StringIO is not a terminal: nobody is attending
    assert ManualRecovery(store=store, prompter=answers).mode_for("x") == "park"
    assert ManualRecovery(prompter=answers).mode_for("x") == "raise"
    with pytest.raises(ConfigError, match="prompter"):
        ManualRecovery("prompt")
    with pytest.raises(ConfigError, match="store"):
        ManualRecovery("park")
    with pytest.raises(ConfigError, match="mode"):
        ManualRecovery("ask-later")


def test_chain_tries_program_fallbacks_before_handing_over() -> None:
    cache: dict[str, str] = {}
    fallback = chain(lambda info: cache.get("config", PASS), ManualRecovery("raise"))
    policy = Policy("fetch-config", attempts=2, clock=FakeClock(), fallback=fallback)
    with pytest.raises(RecoveryRequired):
        policy.call(Flaky(9))
    cache["config"] = "from cache"
    assert policy.call(Flaky(9)) == "from cache"
    with pytest.raises(ConfigError, match="answers instead of returning PASS"):
        Policy("x", attempts=1, clock=FakeClock(), fallback=chain(lambda info: PASS)).call(Flaky(9))


def test_events_tell_displays_about_tickets() -> None:
    bus = EventBus()
    answers, _ = prompter("1\n\n")
    with RecordingSink(bus) as sink:
        Policy(
            "sync",
            attempts=2,
            clock=FakeClock(),
            fallback=ManualRecovery("prompt", prompter=answers, bus=bus),
        ).call(Flaky(2))
    (opened,) = sink.of(TicketOpened)
    (resolved,) = sink.of(TicketResolved)
    assert (
        resolved.ticket_id == opened.ticket_id
        and resolved.choice == "retry"
        and resolved.resolved_by == "ann"
    )


def test_async_policies_hand_over_too() -> None:
    store = MemoryTickets()
    answers, _ = prompter("1\n\n")
    calls = []

    async def fetch() -> str:
        calls.append(1)
        if len(calls) <= 2:
            raise TimeoutError("no answer from 10.0.0.9:443")
        return "ok"

    policy = Policy(
        "fetch",
        attempts=2,
        clock=FakeClock(),
        fallback=ManualRecovery("prompt", prompter=answers, store=store),
    )
    assert asyncio.run(policy.acall(fetch)) == "ok"
    assert store.list()[0].resolution.outcome == "succeeded"  # type: ignore[union-attr]


def test_retry_again_reports_its_outcome_exactly_once() -> None:
    told: list[bool] = []
    flaky = Flaky(4)

    def fallback(info: GiveUp) -> Any:
        return RetryAgain(attempts=1, on_outcome=told.append) if len(told) < 3 else "gave up"

    assert Policy("x", attempts=2, clock=FakeClock(), fallback=fallback).call(flaky) == "ok"
    assert told == [False, False, True]


def test_a_store_that_cannot_park_still_hands_the_ticket_over(tmp_path: Any) -> None:
    from bounceback.stores._tickets import SqliteTickets

    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the home folder should be")
    recovery = ManualRecovery("park", store=SqliteTickets(blocker / "bounceback.db"))
    with pytest.raises(RecoveryRequired, match="could not be parked") as caught:
        Policy("sync", attempts=2, clock=FakeClock(), fallback=recovery).call(Flaky(9))
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    assert caught.value.ticket.guidance


def test_a_ticket_behind_an_open_breaker_guides_on_the_failure_that_opened_it() -> None:
    from bounceback import CircuitOpenError

    errors = iter(
        [
            ConnectionRefusedError(111, "Connect call failed ('10.0.0.9', 502)"),
            CircuitOpenError("plc", "open", None, 4.0),
        ]
    )

    def fn() -> None:
        raise next(errors)

    seen: list[GiveUp] = []
    Policy("read-plc", attempts=2, clock=FakeClock(), fallback=seen.append).call(fn)
    ticket = open_ticket(seen[0], now=1_800_000_000.0)
    assert ticket.topic == "connection-refused"
    assert ticket.error_type == "ConnectionRefusedError"
    assert "10.0.0.9:502" in ticket.guidance[0].text
