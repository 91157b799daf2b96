"""The PostgreSQL (psycopg) error pack against a real server: each fault provoked by real statements."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import errors

from bounceback import ErrorKind
from bounceback.classify import classify
from bounceback.testing import FakeClock
from tests.integrations.packs_support import clear_on_first_wait, guidance_text, policy, ticket
from tests.integrations.postgres_server import PostgresServer


@pytest.fixture
def db(postgres_server: PostgresServer) -> Iterator[PostgresServer]:
    with postgres_server.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS batches")
        conn.execute("CREATE TABLE batches (id int CONSTRAINT batches_pkey PRIMARY KEY, kg numeric NOT NULL)")
        conn.execute("INSERT INTO batches VALUES (1, 10), (2, 20)")
    yield postgres_server


def test_a_unique_violation_is_permanent_and_guidance_names_constraint_and_table(db: PostgresServer) -> None:
    clock = FakeClock()

    def insert() -> Any:
        with db.connect() as conn:
            return conn.execute("INSERT INTO batches VALUES (1, 99)")

    info = policy(clock).call(insert)
    assert clock.sleeps == []
    assert isinstance(info.error, errors.UniqueViolation)
    assert info.classification.kind is ErrorKind.PERMANENT
    t = ticket(info, clock)
    assert t.topic == "postgres-constraint"
    assert t.facts["sqlstate"] == "23505"
    assert "constraint batches_pkey on table batches (UniqueViolation)" in guidance_text(t)
    assert "Key (id)=(1) already exists." in guidance_text(t)


def test_a_missing_table_is_permanent(db: PostgresServer) -> None:
    with db.connect() as conn, pytest.raises(errors.UndefinedTable) as caught:
        conn.execute("SELECT * FROM recipes")
    assert classify(caught.value).kind is ErrorKind.PERMANENT
    clock = FakeClock()
    t = ticket(policy(clock).call(lambda: (_ for _ in ()).throw(caught.value)), clock)
    assert t.topic == "postgres-schema"


def test_a_wrong_password_is_permanent(db: PostgresServer) -> None:
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(db.dsn.replace("password=plant-secret", "password=wrong"))
    # The login refusal reaches psycopg as an OperationalError without SQLSTATE: the pack reads the text.
    assert classify(caught.value).kind is ErrorKind.PERMANENT
    clock = FakeClock()
    t = ticket(policy(clock).call(lambda: (_ for _ in ()).throw(caught.value)), clock)
    assert t.topic == "postgres-auth"
    assert t.facts["sqlstate"] == "28P01"
    assert "pg_hba.conf on the server for 127.0.0.1" in guidance_text(t)


def test_a_serialization_failure_is_transient_and_the_transaction_runs_again(db: PostgresServer) -> None:
    other = db.connect()
    clock = FakeClock()
    runs = []

    def transfer() -> Any:
        with psycopg.connect(db.dsn) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            kg = conn.execute("SELECT kg FROM batches WHERE id = 1").fetchone()[0]  # type: ignore[index]
            if not runs:
                # Another station changes the row between our read and our write, for real.
                other.execute("UPDATE batches SET kg = kg + 1 WHERE id = 1")
            runs.append(1)
            conn.execute("UPDATE batches SET kg = %s WHERE id = 1", (kg + 5,))
            return kg + 5

    with pytest.raises(errors.SerializationFailure) as caught:
        with psycopg.connect(db.dsn) as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            conn.execute("SELECT kg FROM batches WHERE id = 2").fetchone()
            other.execute("UPDATE batches SET kg = kg + 1 WHERE id = 2")
            conn.execute("UPDATE batches SET kg = 0 WHERE id = 2")
    assert classify(caught.value).kind is ErrorKind.TRANSIENT
    assert policy(clock).call(transfer) == 16  # 10 + 1 by the other station, + 5 by us
    assert len(clock.sleeps) == 1
    other.close()


def test_a_deadlock_is_transient_and_the_victim_succeeds_when_run_again(db: PostgresServer) -> None:
    a, b = psycopg.connect(db.dsn), psycopg.connect(db.dsn)
    a.execute("UPDATE batches SET kg = 11 WHERE id = 1")
    b.execute("UPDATE batches SET kg = 22 WHERE id = 2")
    outcome: list[BaseException | None] = []

    def a_second() -> None:
        try:
            a.execute("UPDATE batches SET kg = 12 WHERE id = 2")
            a.commit()
            outcome.append(None)
        except psycopg.Error as exc:
            a.rollback()
            outcome.append(exc)

    worker = threading.Thread(target=a_second)
    worker.start()
    try:
        b.execute("UPDATE batches SET kg = 21 WHERE id = 1")
        b.commit()
        outcome.append(None)
    except psycopg.Error as exc:
        b.rollback()
        outcome.append(exc)
    worker.join(10)
    victims = [e for e in outcome if e is not None]
    assert len(victims) == 1 and isinstance(victims[0], errors.DeadlockDetected)
    assert classify(victims[0]).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(victims[0])), clock)
    assert t.topic == "postgres-conflict"
    a.close()
    b.close()


def test_a_terminated_connection_is_transient_and_a_new_one_works(db: PostgresServer) -> None:
    victim = db.connect()
    pid = victim.info.backend_pid
    with db.connect() as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError) as caught:
        victim.execute("SELECT 1")
    assert caught.value.sqlstate == "57P01"
    assert classify(caught.value).kind is ErrorKind.TRANSIENT
    clock = FakeClock()
    t = ticket(policy(clock, attempts=1).call(lambda: (_ for _ in ()).throw(caught.value)), clock)
    assert t.topic == "postgres-restarting"


def test_too_many_connections_is_throttled_and_clears_when_one_closes(db: PostgresServer) -> None:
    with db.connect() as admin:
        admin.execute("DROP ROLE IF EXISTS hmi")
        admin.execute("CREATE ROLE hmi LOGIN PASSWORD 'hmi' CONNECTION LIMIT 1")
    dsn = db.dsn.replace("user=postgres", "user=hmi").replace("password=plant-secret", "password=hmi")
    holder = psycopg.connect(dsn)
    with pytest.raises(psycopg.OperationalError) as caught:
        psycopg.connect(dsn)
    assert classify(caught.value).kind is ErrorKind.THROTTLED
    t = ticket(policy(FakeClock(), attempts=1).call(lambda: (_ for _ in ()).throw(caught.value)), FakeClock())
    assert t.topic == "postgres-too-many-connections"
    assert f"server at 127.0.0.1:{db.port} has no free connection slot" in guidance_text(t)
    clock = FakeClock()
    clear_on_first_wait(clock, holder.close)

    def query() -> Any:
        with psycopg.connect(dsn) as conn:
            return conn.execute("SELECT 1").fetchone()

    assert policy(clock).call(query) == (1,)
    assert len(clock.sleeps) == 1


def test_server_down_is_transient_and_recovers_when_it_is_back(db: PostgresServer) -> None:
    db.stop()
    clock = FakeClock()

    def query() -> Any:
        with psycopg.connect(db.dsn) as conn:
            return conn.execute("SELECT count(*) FROM batches").fetchone()

    try:
        info = policy(clock, attempts=2).call(query)
        assert info.classification.kind is ErrorKind.TRANSIENT
        t = ticket(info, clock)
        assert t.topic == "connection-refused"
        assert f"127.0.0.1:{db.port}" in guidance_text(t)
        clock = FakeClock()
        clear_on_first_wait(clock, db.start)
        assert policy(clock).call(query) == (2,)
    finally:
        try:
            db.start()
        except RuntimeError:
            pass  # already running again


def test_a_statement_timeout_and_a_lock_not_available_are_transient(db: PostgresServer) -> None:
    with db.connect() as conn, pytest.raises(errors.QueryCanceled) as cancelled:
        conn.execute("SET statement_timeout = '20ms'")
        conn.execute("SELECT pg_sleep(2)")
    assert classify(cancelled.value).kind is ErrorKind.TRANSIENT
    holder = psycopg.connect(db.dsn)
    try:
        holder.execute("SELECT * FROM batches WHERE id = 1 FOR UPDATE")
        with psycopg.connect(db.dsn) as conn, pytest.raises(errors.LockNotAvailable) as locked:
            conn.execute("SELECT * FROM batches WHERE id = 1 FOR UPDATE NOWAIT")
        assert classify(locked.value).kind is ErrorKind.TRANSIENT
        clock = FakeClock()
        clear_on_first_wait(clock, holder.rollback)

        def take() -> Any:
            with psycopg.connect(db.dsn) as conn:
                return conn.execute("SELECT kg FROM batches WHERE id = 1 FOR UPDATE NOWAIT").fetchone()

        assert policy(clock).call(take) is not None
        assert len(clock.sleeps) == 1
    finally:
        holder.close()
