"""The built wheel, installed as a user would, into fresh virtual environments: no extras, each extra, [all].

Every command runs there with what that environment has: it works when its extra is installed, and
otherwise says in one line which ``pip install 'bounceback[...]'`` to run, never with a traceback. The
wheel is built once (``pip wheel --no-deps``) and its dependencies downloaded once into a wheelhouse;
each environment installs from that wheelhouse only (``--no-index``), so the test stays well within
three minutes. The environments have no pip of their own and no system site-packages: the outer pip
installs into them (``pip --python``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI_EXTRAS = {"cli", "web", "demo", "plot", "all"}
# command -> (the extras with which it works, the extra its message must name without them)
COMMANDS: dict[str, tuple[set[str], str]] = {
    "--help": (CLI_EXTRAS, "cli"),
    "run": (CLI_EXTRAS, "cli"),
    "status": (CLI_EXTRAS, "cli"),
    "settings": (CLI_EXTRAS, "cli"),
    "tickets": (CLI_EXTRAS, "cli"),
    "simulate": (CLI_EXTRAS, "cli"),
    "simulate --plot": ({"plot", "all"}, "plot"),
    "dashboard": ({"web", "demo", "all"}, "web"),
    "demo": ({"demo", "all"}, "demo"),
}
LIBRARY = {
    "redis": "import redis, bounceback.stores.redis._store",
    "http": "import bounceback.integrations._httpx, bounceback.integrations._requests",
    "prometheus": "import bounceback.integrations._prometheus",
    "otel": "import bounceback.integrations._otel",
    # The error packs: each library's first error loads its pack, which must import in that venv.
    "modbus": "import bounceback.integrations._pack_modbus, bounceback.integrations._modbus",
    "opcua": "import bounceback.integrations._pack_opcua, bounceback.integrations._opcua",
    "grpc": "import bounceback.integrations._pack_grpc, bounceback.integrations._grpc",
    "aiohttp": "import bounceback.integrations._pack_aiohttp, bounceback.integrations._aiohttp",
    "postgres": "import bounceback.integrations._pack_postgres",
}


def _pip(*args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The wheel of this tree, and a folder holding it and every dependency of every extra."""
    out = tmp_path_factory.mktemp("wheel")
    _pip("wheel", "--no-deps", "-w", str(out), str(ROOT))
    [wheel] = out.glob("bounceback-*.whl")
    house = tmp_path_factory.mktemp("wheelhouse")
    _pip("download", "--only-binary=:all:", "-d", str(house), f"{wheel}[all,demo,plot]")
    yield wheel, house


def _venv(where: Path, wheel: Path, house: Path, extra: str) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    target = f"{wheel}[{extra}]" if extra else str(wheel)
    _pip("--python", str(python), "install", "--no-index", "--find-links", str(house), target)
    return where / "bin"


def _run(bin_dir: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BOUNCEBACK_HOME": str(home), "HOME": str(home)}
    return subprocess.run(
        [str(bin_dir / "bounceback"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def _dashboard(bin_dir: Path, home: Path) -> tuple[int, str, str]:
    """Start the dashboard; once it printed its URL, stop it with Ctrl-C."""
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "BOUNCEBACK_HOME": str(home), "HOME": str(home)}
    proc = subprocess.Popen(
        [str(bin_dir / "bounceback"), "dashboard", "--no-open", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline()
        if url.startswith("http://127.0.0.1:"):
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return (0 if url.startswith("http://127.0.0.1:") else proc.returncode), url + out, err


def _command(bin_dir: Path, home: Path, name: str, tmp: Path) -> tuple[int, str, str]:
    python = str(bin_dir / "python")
    args = {
        "--help": ["--help"],
        "run": ["run", "--op", "install-check", "--", python, "-c", "print('ran')"],
        "status": ["status"],
        "settings": ["settings", "list"],
        "tickets": ["tickets", "list"],
        "simulate": ["simulate", "--clients", "10", "--outage-seconds", "5"],
        "simulate --plot": [
            "simulate",
            "--clients",
            "10",
            "--outage-seconds",
            "5",
            "--plot",
            str(tmp / "calls.png"),
        ],
        "demo": ["demo", "--fast", "--json", "--no-progress"],
    }
    if name == "dashboard":
        return _dashboard(bin_dir, home)
    done = _run(bin_dir, home, *args[name])
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "extra",
    [
        "", "cli", "web", "demo", "plot", "redis", "http", "prometheus", "otel",
        "modbus", "opcua", "grpc", "aiohttp", "postgres", "all",
    ],
)  # fmt: skip
def test_every_command_works_or_names_the_extra_to_install(
    wheelhouse: tuple[Path, Path], tmp_path: Path, extra: str
) -> None:
    wheel, house = wheelhouse
    bin_dir = _venv(tmp_path / "venv", wheel, house, extra)
    home = tmp_path / "home"
    home.mkdir()
    # The library itself needs nothing beyond the standard library.
    core = subprocess.run(
        [str(bin_dir / "python"), "-c", "import bounceback; print(bounceback.retry.__name__)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert core.returncode == 0 and "Traceback" not in core.stderr, core.stderr
    for name, code in LIBRARY.items():
        if extra in (name, "all"):
            done = subprocess.run(
                [str(bin_dir / "python"), "-c", code], capture_output=True, text=True, timeout=60, check=False
            )
            assert done.returncode == 0, (name, done.stderr)
    for name, (works_with, names) in COMMANDS.items():
        code, out, err = _command(bin_dir, home, name, tmp_path)
        assert "Traceback" not in err, (extra, name, err)
        if extra in works_with:
            assert code == 0, (extra, name, out, err)
            continue
        assert code == 2, (extra, name, out, err)
        needed = "cli" if extra not in CLI_EXTRAS else names
        if name == "simulate --plot" and needed == "plot":
            # The simulator's own refusal (bounceback.sim, an error naming the field): one message, no trace.
            assert "matplotlib" in err, err
            continue
        assert err.strip() == (
            f"bounceback: {'the bounceback command line' if needed == 'cli' else '`bounceback ' + name + '`'} "
            f"needs the {needed} extra: pip install 'bounceback[{needed}]'"
        ), (extra, name, err)


def test_the_readme_names_an_extra_for_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    install = readme.split("## Install", 1)[1].split("\n## ", 1)[0]
    extras = ("cli", "web", "demo", "plot", "redis", "http", "prometheus", "otel")
    for extra in (*extras, "modbus", "opcua", "grpc", "aiohttp", "postgres", "all"):
        assert f"bounceback[{extra}]" in install, extra
    assert os.path.exists(ROOT / "pyproject.toml")
