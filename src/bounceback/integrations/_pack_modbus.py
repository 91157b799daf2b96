"""What pymodbus's errors mean: the error pack registered for the ``pymodbus`` module.

No connection, no answer and a garbled frame are transient; among a device's exception responses (raised
by :func:`bounceback.integrations.raise_for_modbus`), *device busy*, *acknowledge*, *gateway path
unavailable* and *gateway target failed to respond* are transient, while *illegal function / data address /
data value*, *device failure*, *negative acknowledge* and *memory parity error* are permanent: asking again
for a register that does not exist cannot help. Wrong parameters and unknown device ids are permanent.
"""

from __future__ import annotations

from collections.abc import Mapping

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import ErrorPack
from bounceback.core.classify._step import Step
from bounceback.integrations._pack_support import type_names

__all__ = ["MODBUS_PACK"]

_T, _P = ErrorKind.TRANSIENT, ErrorKind.PERMANENT
_TRANSIENT_CODES = frozenset({5, 6, 10, 11})
_TOPIC_OF_CODE = {
    1: "modbus-rejected",
    2: "modbus-bad-address",
    3: "modbus-rejected",
    4: "modbus-device-failure",
    5: "modbus-device-busy",
    6: "modbus-device-busy",
    7: "modbus-rejected",
    8: "modbus-device-failure",
    10: "modbus-gateway",
    11: "modbus-gateway",
}


def _names(exc: BaseException) -> frozenset[str]:
    return type_names(exc)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "exception_code", None)
    return code if isinstance(code, int) and "ModbusResponseError" in _names(exc) else None


def _classify(exc: BaseException) -> Classification | None:
    from bounceback.integrations._modbus import EXCEPTION_NAMES

    code = _code(exc)
    if code is not None:
        name = EXCEPTION_NAMES.get(code, f"exception {code}")
        return Classification(_T if code in _TRANSIENT_CODES else _P, f"Modbus {name} ({code})")
    names = _names(exc)
    if "ConnectionException" in names:
        return Classification(_T, "no connection to the Modbus device")
    if names & {"ModbusIOException", "InvalidMessageReceivedException"}:
        return Classification(_T, "the Modbus device did not answer properly")
    if names & {
        "ParameterException",
        "NoSuchIdException",
        "NotImplementedException",
        "MessageRegisterException",
    }:
        return Classification(_P, f"Modbus {type(exc).__name__}: the request itself is wrong")
    return None


def _facts(exc: BaseException) -> Mapping[str, object]:
    from bounceback.integrations._modbus import EXCEPTION_NAMES, FUNCTION_NAMES

    facts: dict[str, object] = {}
    device = getattr(exc, "device_id", None)
    if not isinstance(device, int):
        device = getattr(exc, "dev_id", None)
    if isinstance(device, int) and (device or _code(exc) is not None):
        facts["device"] = device
    function = getattr(exc, "function_code", None)
    if not isinstance(function, int):
        function = getattr(exc, "fcode", None)
    if isinstance(function, int) and function:
        facts["function"] = f"{FUNCTION_NAMES.get(function & 0x7F, 'function')} ({function & 0x7F})"
    code = _code(exc)
    if code is not None:
        facts["modbus_exception"] = f"{EXCEPTION_NAMES.get(code, 'exception')} ({code})"
    address = getattr(exc, "address", None)
    if isinstance(address, int) and code is not None:
        facts["register"] = address
        # Manuals often number registers from 1 (or as 40001 for holding register 0).
        facts["register_one_based"] = address + 1
        if address > 0:
            facts["register_zero_based"] = address - 1
    return facts


def _topic(exc: BaseException, _known: Mapping[str, str]) -> str | None:
    code = _code(exc)
    if code is not None:
        return _TOPIC_OF_CODE.get(code, "modbus-rejected")
    names = _names(exc)
    if "ConnectionException" in names:
        return "modbus-unreachable"
    if names & {"ModbusIOException", "InvalidMessageReceivedException"}:
        return "modbus-no-response"
    return None


_DEVICE = "device {device} at {address}"
MODBUS_PACK = ErrorPack(
    "modbus",
    _classify,
    facts=_facts,
    topic=_topic,
    steps={
        "modbus-device-busy": (
            Step(
                "modbus-busy-wait",
                f"Modbus {_DEVICE} answered {{modbus_exception}} to {{function}}: it is working on a long "
                "command (a flash write, a recipe download, a calibration). Check its panel or the PLC "
                "program for the running task and wait for it to finish.",
                "The Modbus device {device} answered {modbus_exception}: it is working on a long command. "
                "Check its panel or the PLC program for the running task and wait for it to finish.",
            ),
            Step(
                "modbus-poll-rate",
                "Check that no other master (HMI, SCADA, a second program) polls device {device} at the "
                "same time: two masters keep a small device busy.",
                "Check that no other master (HMI, SCADA) polls the device at the same time.",
            ),
        ),
        "modbus-gateway": (
            Step(
                "modbus-gateway-line",
                "The gateway at {address} could not reach device {device} behind it "
                "({modbus_exception}): check the serial (RS-485) line to it: power, wiring, termination, "
                "baud rate and parity.",
                "The gateway could not reach device {device} behind it ({modbus_exception}): check the "
                "serial (RS-485) line to it: power, wiring, termination, baud rate and parity.",
                "The gateway could not reach the device behind it: check the serial line to it.",
            ),
            Step(
                "modbus-gateway-routing",
                "In the gateway's configuration, check that unit id {device} is routed to the right serial "
                "port, and that its response timeout is longer than the device needs to answer.",
                "In the gateway's configuration, check the unit id routing and its response timeout.",
            ),
        ),
        "modbus-bad-address": (
            Step(
                "modbus-register-map",
                "Device {device} has no register {register} ({function}): check the register map in the "
                "device's manual. Manuals often count from 1, so the manual's {register_one_based} may be "
                "address {register}, or the manual's {register} address {register_zero_based}.",
                "Device {device} has no register {register} ({function}): check the register map in the "
                "device's manual; manuals often count from 1 (register 40001 is address 0).",
                "The device has no such register: check the register map in the device's manual.",
            ),
            Step(
                "modbus-register-count",
                "Check the count too: a block read that runs past the last register fails as a whole.",
            ),
            Step(
                "modbus-unit-id",
                "Check that unit id {device} is the device you mean (a gateway may route ids to other "
                "devices with other maps).",
            ),
        ),
        "modbus-rejected": (
            Step(
                "modbus-function-supported",
                "Device {device} refused {function}: {modbus_exception}. Check in its manual which function "
                "codes and value ranges it accepts (some devices only take write multiple registers, 16).",
                "The device refused the request: check in its manual which functions and values it accepts.",
            ),
        ),
        "modbus-device-failure": (
            Step(
                "modbus-device-alarm",
                "Device {device} reported {modbus_exception} while serving {function}: look at its display "
                "or diagnostics for an alarm, and at the unit id (pymodbus servers answer an unknown id so).",
                "The device reported an internal failure: look at its display or diagnostics for an alarm.",
            ),
            Step(
                "modbus-device-restart", "If the alarm persists, restart the device and call its maintainer."
            ),
        ),
        "modbus-unreachable": (
            Step(
                "modbus-device-up",
                "Check that the Modbus device or gateway at {address} is powered and on the network "
                "(`ping {host}`), and that port {port} is its Modbus TCP port (502 by default).",
                "Check that the Modbus device or gateway is powered and on the network, and its Modbus TCP "
                "port (502 by default).",
            ),
            Step(
                "modbus-one-master",
                "Many small devices accept only one or two TCP connections: check whether another master "
                "(HMI, SCADA, a stuck program) holds them.",
            ),
        ),
        "modbus-no-response": (
            Step(
                "modbus-timeout",
                "The device at {address} did not answer in time: check its load, the network between, and "
                "the client's timeout.",
                "The device did not answer in time: check its load, the network between, and the timeout.",
            ),
        ),
    },
)
"""The pymodbus error pack."""
