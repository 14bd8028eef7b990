"""An hpcflow server on a free loopback port: in a thread (tests), a subprocess, or a gunicorn
subprocess (`hpcflow run`).

A subprocess keeps the server off the runner's GIL, which matters for dispatch latency.
gunicorn keeps connections alive (werkzeug's server closes each one after a response, so every
request would pay for a new connection and a new thread).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from types import TracebackType
from typing import Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

MODES = ("thread", "process", "gunicorn")


class QuietHandler(WSGIRequestHandler):
    """Keep-alive request handler that does not log every request."""

    # HTTP/1.1 keeps the runner's connection open (HTTP/1.0 reconnects for every request,
    # a new thread each time); without Nagle a response is not held back for an ACK.
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        """Per-request access logs would cost more than the request."""


def serve(
    database_url: str,
    host: str = "127.0.0.1",
    port: int = 0,
    settings: dict[str, Any] | None = None,
) -> BaseWSGIServer:
    """A threaded werkzeug server for a fresh app (not yet serving)."""
    from hpcflow.app import create_app
    from hpcflow.config import Settings

    app = create_app(Settings(database_url=database_url, **(settings or {})))
    return make_server(host, port, app, threaded=True, request_handler=QuietHandler)


class EmbeddedServer:
    """Start with `with EmbeddedServer(url) as server:`; server.url is the base URL."""

    def __init__(
        self,
        database_url: str,
        *,
        mode: str = "thread",
        host: str = "127.0.0.1",
        port: int = 0,
        settings: dict[str, Any] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.database_url = database_url
        self.mode = mode
        self.host = host
        self.port = port
        # Further Settings fields (e.g. node_token, autoscale_enabled) for the server.
        self.settings = dict(settings or {})
        # Extra environment of a server subprocess (and of the runners it launches).
        self.env = dict(env or {})
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Start serving (on the same port as before when restarted); returns the URL."""
        if self.mode == "thread":
            self._server = serve(self.database_url, self.host, self.port, self.settings)
            self.port = self._server.server_port
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="hpcflow-server", daemon=True
            )
            self._thread.start()
            return self.url
        if self.mode == "gunicorn" and not self.port:
            with socket.socket() as sock:  # gunicorn binds after it forks: choose the port here
                sock.bind((self.host, 0))
                self.port = int(sock.getsockname()[1])
        cmd = [
            sys.executable,
            "-m",
            "hpcflow.runner.embedded",
            "--database-url",
            self.database_url,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--settings",
            json.dumps(self.settings),
        ]
        if self.mode == "gunicorn":
            cmd.append("--gunicorn")
        self._proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line.startswith("PORT "):
            self._proc.kill()
            raise RuntimeError(f"embedded server did not start (said {line!r})")
        self.port = int(line.split()[1])
        if self.mode == "gunicorn":
            self._wait_until_serving()
        return self.url

    def _wait_until_serving(self, timeout: float = 60.0) -> None:
        """gunicorn says its port before its worker listens: wait for an answer to /ping."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(self.url + "/ping", timeout=5):
                    return
            except OSError:
                assert self._proc is not None
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop(kill=True)
                    raise RuntimeError("embedded gunicorn server did not start") from None
                time.sleep(0.05)

    def stop(self, *, kill: bool = False) -> None:
        """Stop serving; kill=True is SIGKILL for a subprocess (a crash, for tests)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._proc is not None:
            if kill:
                self._proc.kill()
            else:
                self._proc.terminate()
            self._proc.wait(timeout=30)
            self._proc = None

    def __enter__(self) -> EmbeddedServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    """Serve until SIGTERM; prints 'PORT <n>' once listening."""
    parser = argparse.ArgumentParser(description="hpcflow embedded server")
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--settings", default="{}", help="further Settings fields as JSON")
    parser.add_argument(
        "--gunicorn",
        action="store_true",
        help="serve with gunicorn (one worker, keep-alive) on --port",
    )
    args = parser.parse_args(argv)
    if args.gunicorn:
        from hpcflow.cli.server import gunicorn_app
        from hpcflow.config import Settings

        values = {"workers": 1, "threads": 8, **json.loads(args.settings)}
        settings = Settings(
            database_url=args.database_url, host=args.host, port=args.port, **values
        )
        print(f"PORT {args.port}", flush=True)
        gunicorn_app(settings).run()
        return
    server = serve(args.database_url, args.host, args.port, json.loads(args.settings))
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print(f"PORT {server.server_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
