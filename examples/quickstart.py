"""A short recovery you can watch: a service that refuses the first connections, then answers."""

from __future__ import annotations

import logging
import socket
import threading
import time

import bounceback


def flaky_server(refusals: int) -> tuple[int, threading.Thread]:
    """A TCP echo-ish server on 127.0.0.1 that closes the first ``refusals`` connections at once."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        with listener:
            for n in range(refusals + 1):
                conn, _ = listener.accept()
                with conn:
                    if n >= refusals:
                        conn.sendall(b"config: sample-rate=10Hz\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return port, thread


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    stop = bounceback.log_events("bounceback")
    port, thread = flaky_server(refusals=3)

    @bounceback.retry(attempts=6, backoff=bounceback.Backoff(initial=0.2, max_delay=2), operation="read-config")
    def read_config() -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            data = conn.recv(1024)
        if not data:
            raise ConnectionResetError("device closed the connection before answering")
        return data.decode().strip()

    started = time.monotonic()
    print(read_config(), f"(in {time.monotonic() - started:.2f} s)")
    stop()
    thread.join(timeout=1)


if __name__ == "__main__":
    main()
