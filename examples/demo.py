"""`make demo`: a real server, the diamond workflow, local runners launched by the autoscaler."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "demo-run"
SPEC = "examples/diamond/diamond.yaml"
TIMEOUT_S = 180


def free_port() -> int:
    """A port the kernel just handed out, so two demos never collide."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def hpcflow(*args: str, url: str) -> str:
    """Run one CLI command against the demo server, echo it, and return its output."""
    print(f"\n$ hpcflow {' '.join(args)}", flush=True)
    out = subprocess.run(
        [sys.executable, "-m", "hpcflow", *args, "--url", url],
        cwd=ROOT,
        env={**os.environ, "COLUMNS": "140"},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    print(out, end="", flush=True)
    return out


def wait_for_server(url: str, server: subprocess.Popen[bytes]) -> None:
    """Poll /ping until the server answers; fail fast if it died."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"demo: the server exited with {server.returncode}; see {RUN_DIR}/server.log")
        try:
            if requests.get(f"{url}/ping", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    sys.exit("demo: the server did not answer /ping within 60 s")


def wait_for_completion(url: str, key: str) -> dict[str, object]:
    """Follow the workflow until every job has finished."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        body = requests.get(f"{url}/workflows/{key}/is_complete", timeout=5).json()
        if body.get("is_complete"):
            return dict(body)
        time.sleep(0.5)
    sys.exit(f"demo: workflow {key} did not complete within {TIMEOUT_S} s")


def main() -> int:
    """Start a server on SQLite, submit the diamond, let the autoscaler run it, show the results."""
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    shutil.rmtree(ROOT / "output" / "diamond", ignore_errors=True)
    RUN_DIR.mkdir()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (RUN_DIR / "server.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hpcflow",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--database-url",
            f"sqlite:///{RUN_DIR / 'hpcflow.db'}",
            "--autoscale-interval",
            "0.5",
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "HPCFLOW_NODE_DIR": str(RUN_DIR / "nodes")},
    )
    try:
        wait_for_server(url, server)
        print(f"demo: hpcflow server on {url} (SQLite in {RUN_DIR}/hpcflow.db)")
        key = hpcflow("workflows", "create", SPEC, "--start", url=url).split()[-1]
        hpcflow("jobs", "list", key, url=url)
        hpcflow(
            "local",
            "add-config",
            key,
            "--name",
            "this-machine",
            "--max-nodes",
            "1",
            "--num-cpus",
            "2",
            "--memory",
            "2g",
            url=url,
        )
        started = time.monotonic()
        wait_for_completion(url, key)
        print(f"\ndemo: workflow {key} complete in {time.monotonic() - started:.1f} s")
        hpcflow("reports", "results", key, url=url)
        summary = requests.get(f"{url}/workflows/{key}/user_data", timeout=5).json()["items"]
        for item in summary:
            print(f"user data {item['name']}: {item.get('data')}")
        results = requests.get(f"{url}/workflows/{key}/results", timeout=5).json()["items"]
        failed = [r for r in results if r["return_code"] != 0]
        return 1 if failed or len(results) < 4 else 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


if __name__ == "__main__":
    sys.exit(main())
