"""A gunicorn hpcflow server for benchmarks, started as `hpcflow serve` starts its workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parent.parent


class Gunicorn:
    """gunicorn (gthread) on a free loopback port, with the peak RSS of its process tree."""

    def __init__(self, database_url: str, workers: int = 1, threads: int = 4) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "HPCFLOW_DATABASE_URL": database_url, "HPCFLOW_LOG_LEVEL": "WARNING"}
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-w",
            str(workers),
            "-k",
            "gthread",
            "--threads",
            str(threads),
            "-b",
            f"127.0.0.1:{self.port}",
            "--timeout",
            "600",
            "--log-level",
            "warning",
            "hpcflow.app:serving_app()",
        ]
        self.proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
        self.http = requests.Session()
        self.peak_rss = 0
        self._stop = threading.Event()
        for _ in range(300):
            try:
                self.http.get(self.url + "/ping", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.1)
        else:
            self.stop()
            raise RuntimeError("gunicorn did not start")
        threading.Thread(target=self._sample, daemon=True).start()

    def _sample(self) -> None:
        root = psutil.Process(self.proc.pid)
        while not self._stop.is_set():
            try:
                procs = [root, *root.children(recursive=True)]
                self.peak_rss = max(self.peak_rss, sum(p.memory_info().rss for p in procs))
            except psutil.Error:
                pass
            time.sleep(0.05)

    def reset_peak(self) -> None:
        """Start measuring the peak RSS anew."""
        self.peak_rss = 0

    def call(self, method: str, path: str, body: Any = None, data: bytes | None = None) -> Any:
        """One request; raises with the server's message on an error status."""
        headers = {"Content-Type": "application/json"} if data else None
        resp = self.http.request(
            method, self.url + path, json=body, data=data, timeout=600, headers=headers
        )
        if resp.status_code != 200:
            raise RuntimeError(f"{method} {path} -> {resp.status_code}: {resp.text[:500]}")
        return resp.json()

    def stop(self) -> None:
        """Stop the server and wait for it (kill it if it lingers)."""
        self._stop.set()
        self.http.close()  # open keep-alive connections hold gunicorn's graceful shutdown
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
