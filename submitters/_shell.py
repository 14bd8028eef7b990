"""Run scheduler commands (sbatch, squeue, ...) through `sh`, retrying transient failures.

Every failure becomes a SubmitterError that carries the command, exit code, stdout and stderr,
so the autoscaler can store exactly what the scheduler said.
"""

from __future__ import annotations

import os
import shlex
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import sh

from hpcflow.errors import SubmitterError

# What schedulers say when asking again later may work (Slurm's wording; matched lowercase).
TRANSIENT = (
    "resource temporarily unavailable",
    "socket timed out",
    "unable to contact slurm controller",
    "temporarily unable to accept job",
    "connection refused",
    "connection timed out",
    "slurm_persist_conn_open",
    "try again later",
)


@dataclass(frozen=True)
class Output:
    """What one command run printed and how it exited."""

    command: str
    exit_code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr together, for matching messages."""
        return f"{self.stdout}\n{self.stderr}"


def is_transient(text: str) -> bool:
    """True when the message says a retry may succeed."""
    low = text.lower()
    return any(marker in low for marker in TRANSIENT)


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


@dataclass
class Shell:
    """Runs one kind of scheduler's commands with an environment, timeout and retry policy."""

    env: Mapping[str, str] | None = None
    retries: int = 5
    backoff: float = 1.0
    sleep: Callable[[float], None] = time.sleep
    timeout: float = 120.0
    # Number of times each command name was run (tests and logs read it).
    calls: dict[str, int] = field(default_factory=dict)

    def environ(self) -> dict[str, str]:
        """The process environment with this shell's overrides (e.g. SLURM_CONF, PATH)."""
        return {**os.environ, **(self.env or {})}

    def _resolve(self, name: str, env: Mapping[str, str]) -> str:
        path = shutil.which(name, path=env.get("PATH"))
        if path is None:
            raise SubmitterError(
                f"{name} not found on PATH ({env.get('PATH', '')}); is the "
                "scheduler's client installed here?",
                command=name,
            )
        return path

    def once(
        self,
        name: str,
        args: Sequence[str],
        *,
        extra_env: Mapping[str, str] | None = None,
        ok_codes: Sequence[int] = (0,),
    ) -> Output:
        """Run the command once; a non-zero exit is returned, not raised."""
        env = {**self.environ(), **(extra_env or {})}
        command = shlex.join([name, *args])
        self.calls[name] = self.calls.get(name, 0) + 1
        path = self._resolve(name, env)
        # Our own timer rather than sh's _timeout, whose watcher adds ~0.1 s to every call.
        expired = threading.Event()
        try:
            proc = sh.Command(path)(
                *args,
                _env=env,
                _bg=True,
                _bg_exc=False,
                _return_cmd=True,
                _ok_code=list(ok_codes) or [0],
                _in=None,
            )
        except OSError as exc:
            raise SubmitterError(f"{command} could not start: {exc}", command=command) from exc

        def give_up() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(self.timeout, give_up)
        timer.daemon = True
        timer.start()
        try:
            proc.wait()
        except sh.ErrorReturnCode as exc:
            if expired.is_set():
                # No answer in time: the command may or may not have acted.
                raise SubmitterError(
                    f"{command} gave no answer within {self.timeout:g} s",
                    command=command,
                    transient=True,
                ) from exc
            return Output(command, exc.exit_code, _decode(exc.stdout), _decode(exc.stderr))
        finally:
            timer.cancel()
        return Output(command, proc.exit_code or 0, _decode(proc.stdout), _decode(proc.stderr))

    def pause(self, attempt: int) -> None:
        """Wait before retry `attempt` (1, 2, ...): exponential backoff."""
        self.sleep(self.backoff * 2 ** (attempt - 1))

    def run(
        self, name: str, args: Sequence[str], *, extra_env: Mapping[str, str] | None = None
    ) -> Output:
        """Run until it exits 0; retry transient failures; raise SubmitterError otherwise."""
        attempt = 0
        while True:
            try:
                out = self.once(name, args, extra_env=extra_env)
            except SubmitterError as exc:
                if not exc.transient or attempt >= self.retries:
                    raise
                attempt += 1
                self.pause(attempt)
                continue
            if out.exit_code == 0:
                return out
            if not is_transient(out.text) or attempt >= self.retries:
                raise failure(out, transient=is_transient(out.text))
            attempt += 1
            self.pause(attempt)


def failure(out: Output, *, transient: bool = False, message: str | None = None) -> SubmitterError:
    """A SubmitterError naming the command and quoting what it said."""
    said = (out.stderr.strip() or out.stdout.strip() or "no output").splitlines()[-1]
    text = message or f"{out.command} failed with exit code {out.exit_code}: {said}"
    return SubmitterError(
        text,
        command=out.command,
        exit_code=out.exit_code,
        stdout=out.stdout,
        stderr=out.stderr,
        transient=transient,
    )
