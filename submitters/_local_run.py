"""Supervise one local runner: `python -m submitters._local_run --state-dir D -- CMD...`.

The supervisor's pid is the allocation's scheduler id. It hands that id to the runner as
HPCFLOW_SCHEDULER_ID (the runner records it, so the server can match the runner to this
allocation), passes stop signals on, and writes `D/<pid>.exit.json` when the runner ends, so
any process - not only the one that launched it - can tell completed from failed or canceled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def exit_path(state_dir: Path, pid: int) -> Path:
    """Where the supervisor with this pid records how its runner ended."""
    return state_dir / f"{pid}.exit.json"


def write_json(path: Path, data: dict[str, object]) -> None:
    """Write atomically, so a reader never sees half a record."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Run the command until it ends; returns its exit status (128+signal when killed)."""
    parser = argparse.ArgumentParser(prog="python -m submitters._local_run")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--grace",
        type=float,
        default=60.0,
        help="Seconds after a stop signal before the runner is killed.",
    )
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command given")
    pid = os.getpid()
    # Stored with the exit record: tells it apart from a record left by an earlier owner of pid.
    started = psutil.Process(pid).create_time()
    env = {**os.environ, "HPCFLOW_SCHEDULER_ID": str(pid)}
    children: list[subprocess.Popen[bytes]] = []
    stopped: list[int] = []

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        # A group-wide signal reached the runner already; one sent to us alone must be passed on.
        if not stopped and args.grace > 0:
            signal.setitimer(signal.ITIMER_REAL, args.grace)
        stopped.append(signum)
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    def on_alarm(_signum: int, _frame: FrameType | None) -> None:
        for child in children:
            if child.poll() is None:
                child.kill()

    # Handlers first: a stop that comes while the runner starts is still recorded and passed on.
    for sig in STOP_SIGNALS:
        signal.signal(sig, on_stop)
    signal.signal(signal.SIGALRM, on_alarm)
    try:
        child = subprocess.Popen(command, env=env)
    except OSError as exc:
        print(f"hpcflow: cannot start the runner {command[0]!r}: {exc}", file=sys.stderr)
        write_json(
            exit_path(args.state_dir, pid),
            {
                "pid": pid,
                "create_time": started,
                "exit_code": 127,
                "ended_at": time.time(),
                "signal": None,
            },
        )
        return 127
    children.append(child)
    if stopped:
        child.send_signal(stopped[0])
    code = child.wait()
    signal.setitimer(signal.ITIMER_REAL, 0)
    write_json(
        exit_path(args.state_dir, pid),
        {
            "pid": pid,
            "create_time": started,
            "exit_code": code,
            "ended_at": time.time(),
            "signal": signal.Signals(stopped[0]).name if stopped else None,
        },
    )
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main())
