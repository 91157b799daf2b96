"""Fixtures of the integration tests: real Modbus, OPC UA and PostgreSQL servers on 127.0.0.1."""

from __future__ import annotations

from tests.integrations.modbus_server import modbus_device  # noqa: F401  (fixture)
from tests.integrations.opcua_server import opcua_plant  # noqa: F401  (fixture)
from tests.integrations.postgres_server import postgres_server  # noqa: F401  (fixture)
