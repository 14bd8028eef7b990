"""Local: hpcflow runners as detached processes on this machine.

Each allocation is a small supervisor (`submitters._local_run`) in a session of its own, with
the runner as its child; its pid is the scheduler id. The supervisor gives the runner
HPCFLOW_SCHEDULER_ID=<pid>, so the server matches the runner's compute node to the allocation.
The launch record (`<output_dir>/.state/<pid>.json`: pid and process start time) guards
against pid reuse; the supervisor's exit record says how the runner ended. Both are files, so a
later process (`hpcflow nodes list`) reads the same states as the one that launched.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import psutil

from hpcflow.errors import SubmitterError
from submitters._local_run import exit_path, write_json
from submitters.base import NodeRequest, NodeState, SubmitResult, Submitter

# Process start times are read from /proc with clock-tick precision.
_SAME_START = 0.5


def default_runner_command() -> list[str]:
    """`python -m hpcflow runner` with this interpreter."""
    return [sys.executable, "-m", "hpcflow", "runner"]


def same_process(record: Mapping[str, Any] | None, launch: Mapping[str, Any] | None) -> bool:
    """True when a record belongs to the launched process (not an earlier one with its pid)."""
    if record is None:
        return False
    ours, theirs = (launch or {}).get("create_time"), record.get("create_time")
    return ours is None or theirs is None or abs(float(ours) - float(theirs)) <= _SAME_START


def ended_state(record: Mapping[str, Any]) -> NodeState:
    """A finished supervisor's state: stopped by a signal, else by the runner's exit code."""
    if record.get("signal"):
        return NodeState.CANCELED
    return NodeState.COMPLETED if record.get("exit_code") == 0 else NodeState.FAILED


class LocalSubmitter(Submitter):
    """Start, poll and stop runner processes on the machine this code runs on."""

    name: ClassVar[str] = "local"

    def __init__(
        self,
        *,
        output_dir: str | Path = "hpcflow-local",
        runner_command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        grace: float = 60.0,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.runner_command = list(runner_command or default_runner_command())
        self.env = dict(env or {})
        # Seconds between SIGTERM and SIGKILL when a runner is canceled.
        self.grace = grace
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def state_dir(self) -> Path:
        """Launch and exit records."""
        return self.output_dir.absolute() / ".state"

    def command(self, request: NodeRequest) -> list[str]:
        """The runner's command line (no credentials: they go in the environment)."""
        res = {**{k: request.config.get(k) for k in ("num_cpus", "memory")}, **request.resources}
        cmd = [
            *self.runner_command,
            request.workflow_key,
            "--url",
            request.server_url,
            "--scheduler-config-id",
            request.scheduler_config_id,
        ]
        if res.get("num_cpus"):
            cmd += ["--num-cpus", str(res["num_cpus"])]
        if res.get("memory"):
            cmd += ["--memory", str(res["memory"])]
        if res.get("num_gpus") is not None:
            cmd += ["--num-gpus", str(res["num_gpus"])]
        if request.walltime:
            cmd += ["--time-limit", request.walltime]
        return [*cmd, *request.runner_args]

    def submit(self, request: NodeRequest) -> SubmitResult:
        """Start one supervised runner, detached from this process's session."""
        cmd = self.command(request)
        out_dir = self.output_dir.absolute()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        log_path = out_dir / (
            f"runner-wf{request.workflow_key}-c{request.config_key}-{stamp}-"
            f"{uuid.uuid4().hex[:8]}.log"
        )
        env = {
            **os.environ,
            **self.env,
            "HPCFLOW_SCHEDULER_TYPE": "local",
            "HPCFLOW_SCHEDULER_CONFIG_ID": request.scheduler_config_id,
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("HPCFLOW_SCHEDULER_ID", None)
        if request.token:
            env["HPCFLOW_TOKEN"] = request.token
        wrapper = [
            sys.executable,
            "-m",
            "submitters._local_run",
            "--state-dir",
            str(self.state_dir),
            "--grace",
            str(self.grace),
            "--",
            *cmd,
        ]
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(
                    wrapper,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    close_fds=True,
                    start_new_session=True,
                )
        except OSError as exc:
            raise SubmitterError(
                f"cannot start a local runner: {exc}", command=shlex.join(wrapper)
            ) from exc
        self._children[proc.pid] = proc
        try:
            started: float | None = psutil.Process(proc.pid).create_time()
        except psutil.NoSuchProcess:
            started = None  # already over; its exit record tells how it ended
        write_json(
            self.state_dir / f"{proc.pid}.json",
            {
                "pid": proc.pid,
                "create_time": started,
                "command": cmd,
                "output": str(log_path),
                "workflow_key": request.workflow_key,
                "scheduler_config_id": request.scheduler_config_id,
                "submitted_at": time.time(),
            },
        )
        return SubmitResult(
            scheduler_id=str(proc.pid), script=shlex.join(cmd), output_path=str(log_path)
        )

    def _record(self, name: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self.state_dir / name).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _process(self, pid: int, launch: Mapping[str, Any] | None) -> psutil.Process | None:
        """The live process that is this allocation (not a later one that reused its pid)."""
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            started = (launch or {}).get("create_time")
            if started is None or abs(proc.create_time() - float(started)) > _SAME_START:
                return None
            return proc
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None

    def _state(self, scheduler_id: str) -> NodeState:
        if not scheduler_id.isdigit():
            return NodeState.UNKNOWN
        pid = int(scheduler_id)
        child = self._children.get(pid)
        launch = self._record(f"{pid}.json")
        ended = self._record(exit_path(self.state_dir, pid).name)
        if ended is not None and same_process(ended, launch):
            if child is not None:
                # It wrote its record and is exiting: reap it, so no zombie is left behind.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=1)
                if child.returncode is not None:
                    self._children.pop(pid, None)
            return ended_state(ended)
        code = child.poll() if child is not None else None
        if child is None and self._process(pid, launch) is not None:
            return NodeState.RUNNING
        if child is not None and code is None:
            return NodeState.RUNNING
        # Gone without an exit record: stopped before its handlers were set, or killed.
        if same_process(self._record(f"{pid}.cancel.json"), launch):
            return NodeState.CANCELED
        if child is not None:
            # Our own child, reaped now: its exit code is certain (later calls read the records).
            self._children.pop(pid, None)
            return NodeState.COMPLETED if code == 0 else NodeState.FAILED
        return NodeState.FAILED if launch and launch.get("create_time") else NodeState.UNKNOWN

    def status(self, ids: Sequence[str]) -> dict[str, NodeState]:
        """States from the OS and the supervisors' records; ids never launched are unknown."""
        return {str(i): self._state(str(i)) for i in ids}

    def cancel(self, ids: Sequence[str]) -> None:
        """SIGTERM each allocation's process group; ended or unknown ids are skipped."""
        for scheduler_id in map(str, ids):
            if not scheduler_id.isdigit():
                continue
            pid = int(scheduler_id)
            child = self._children.get(pid)
            if child is not None and child.poll() is not None:
                continue
            launch = self._record(f"{pid}.json")
            if child is None and self._process(pid, launch) is None:
                continue
            write_json(
                self.state_dir / f"{pid}.cancel.json",
                {
                    "pid": pid,
                    "create_time": (launch or {}).get("create_time"),
                    "canceled_at": time.time(),
                },
            )
            try:
                os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            except PermissionError as exc:
                raise SubmitterError(f"cannot stop local runner {pid}: {exc}") from exc
