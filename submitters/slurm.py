"""Slurm: sbatch a rendered script that starts hpcflow runners; squeue/sacct; scancel.

Commands run through `sh`, with `env` added to the environment (SLURM_CONF, PATH) and
transient controller errors retried with exponential backoff. The runner's credentials
(NodeRequest.token) reach the job as HPCFLOW_TOKEN in sbatch's environment, which sbatch
exports to the job by default; they are never written into the script.

A config's `template` is either the name of a template in `template_dir` (admins' site
templates) or the shipped `templates/slurm/` folder, or inline Jinja2 text (rendered in a
sandbox). Either way the variables are those of `submitters._sbatch.context`.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

from hpcflow.errors import SubmitterError
from submitters import _sbatch
from submitters._shell import Output, Shell, failure, is_transient
from submitters._slurm_states import JOB_ID, find_marker, parse_parsable, parse_table
from submitters.base import NodeRequest, NodeState, SubmitResult, Submitter

log = logging.getLogger(__name__)
# scancel's words for a job that is already gone: cancelling it again is not an error.
_GONE = ("invalid job id", "already completing or completed", "job/step already")


def default_runner_command() -> list[str]:
    """`python -m hpcflow runner` with this interpreter: works without a script on PATH."""
    return [sys.executable, "-m", "hpcflow", "runner"]


class SlurmSubmitter(Submitter):
    """One sbatch allocation per request; status from one squeue call (sacct for the rest)."""

    name: ClassVar[str] = "slurm"

    def __init__(
        self,
        *,
        script_dir: str | Path = "hpcflow-slurm",
        runner_command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        retries: int = 5,
        backoff: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        template_dir: str | Path | None = None,
        template: str = _sbatch.DEFAULT_TEMPLATE,
        timeout: float = 120.0,
        status_retries: int = 1,
        per_node_runners: bool = True,
    ) -> None:
        self.script_dir = Path(script_dir)
        self.runner_command = list(runner_command or default_runner_command())
        self.template_dir = template_dir
        self.template = template
        self.per_node_runners = per_node_runners
        self.retries = retries
        self.shell = Shell(
            env=dict(env or {}), retries=retries, backoff=backoff, sleep=sleep, timeout=timeout
        )
        # Polling runs every autoscaler tick: fail fast there, the next tick asks again.
        self.poll_shell = Shell(
            env=self.shell.env,
            retries=status_retries,
            backoff=backoff,
            sleep=sleep,
            timeout=timeout,
            calls=self.shell.calls,
        )

    # --- submit ---------------------------------------------------------------------------------

    def render(self, request: NodeRequest, marker: str | None = None) -> _sbatch.Script:
        """The sbatch script for a request (no I/O); SubmitterError for a bad config."""
        return _sbatch.render(
            request,
            runner_command=self.runner_command,
            script_dir=self.script_dir.absolute(),
            marker=marker or uuid.uuid4().hex[:16],
            per_node_runners=self.per_node_runners,
            template=self.template,
            template_dir=self.template_dir,
        )

    def submit(self, request: NodeRequest) -> SubmitResult:
        """Write the script, sbatch it once (a lost answer is looked up, not resubmitted)."""
        script = self.render(request)
        path = self.script_dir.absolute() / f"{script.job_name}-{script.marker}.sh"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(script.text)
        except OSError as exc:
            raise SubmitterError(f"cannot write the sbatch script {path}: {exc}") from exc
        extra = {"HPCFLOW_TOKEN": request.token} if request.token else None
        job_id = self._run_sbatch(["--parsable", str(path)], extra, script)
        return SubmitResult(
            scheduler_id=job_id, script=script.text, output_path=script.output.replace("%j", job_id)
        )

    def _run_sbatch(
        self, args: list[str], extra: Mapping[str, str] | None, script: _sbatch.Script
    ) -> str:
        attempt = 0
        while True:
            out: Output | None = None
            try:
                out = self.shell.once("sbatch", args, extra_env=extra)
            except SubmitterError as exc:
                if not exc.transient or attempt >= self.retries:
                    raise
                error: SubmitterError = exc
            else:
                if out.exit_code == 0:
                    parsed = parse_parsable(out.stdout)
                    if parsed:
                        return parsed[0]
                    # sbatch accepted the job but its id is not in the answer: look it up.
                    found = self._lookup(script)
                    if found:
                        return found
                    raise failure(
                        out,
                        message=f"{out.command} printed no job id "
                        f"(expected 'jobid[;cluster]'): {out.stdout.strip()!r}",
                    )
                error = failure(out, transient=is_transient(out.text))
                if not error.transient or attempt >= self.retries:
                    raise error
            # No answer, or a timeout on the controller's reply: the job may exist already.
            if out is None or "timed out" in out.text.lower():
                found = self._lookup(script)
                if found:
                    return found
            attempt += 1
            log.warning("sbatch failed (%s); retry %d of %d", error.message, attempt, self.retries)
            self.shell.pause(attempt)

    def _lookup(self, script: _sbatch.Script) -> str | None:
        """The id of the job carrying this submission's marker, if Slurm knows one."""
        try:
            out = self.poll_shell.run(
                "squeue",
                ["--noheader", "--states=all", f"--name={script.job_name}", "--format=%i|%k"],
            )
        except SubmitterError:
            return None
        return find_marker(out.stdout, script.marker)

    # --- status ---------------------------------------------------------------------------------

    def status(self, ids: Sequence[str]) -> dict[str, NodeState]:
        """One squeue call; ids it does not list are asked of sacct; the rest stay unknown."""
        wanted = [str(i) for i in ids]
        found: dict[str, NodeState] = {}
        valid = list(dict.fromkeys(i for i in wanted if JOB_ID.match(i)))
        if valid:
            try:
                out = self.poll_shell.run(
                    "squeue",
                    [f"--jobs={','.join(valid)}", "--states=all", "--noheader", "--format=%i|%T"],
                )
                found = parse_table(out.stdout)
            except SubmitterError as exc:
                # Slurm rejects a lone id it has forgotten; only then is accounting worth asking.
                if "invalid job id" not in f"{exc.stdout}\n{exc.stderr}".lower():
                    log.warning(
                        "squeue failed; %d allocations unknown: %s", len(valid), exc.message
                    )
                    return dict.fromkeys(wanted, NodeState.UNKNOWN)
            missing = [i for i in valid if i not in found]
            if missing:
                found.update(self._accounting(missing))
        return {i: found.get(i, NodeState.UNKNOWN) for i in wanted}

    def _accounting(self, ids: list[str]) -> dict[str, NodeState]:
        """States of jobs the controller forgot, from sacct; empty when accounting is off."""
        try:
            out = self.poll_shell.run(
                "sacct",
                [
                    f"--jobs={','.join(ids)}",
                    "--allocations",
                    "--noheader",
                    "--parsable2",
                    "--format=JobID,State",
                ],
            )
        except SubmitterError as exc:
            log.info("sacct cannot tell about %s: %s", ",".join(ids), exc.message)
            return {}
        return {k: v for k, v in parse_table(out.stdout).items() if k in ids}

    # --- cancel ---------------------------------------------------------------------------------

    def cancel(self, ids: Sequence[str]) -> None:
        """scancel them all at once; jobs Slurm no longer knows (or that ended) are fine."""
        valid = [str(i) for i in ids if JOB_ID.match(str(i))]
        if not valid:
            return
        attempt = 0
        while True:
            out = self.shell.once("scancel", valid)
            if out.exit_code == 0:
                return
            errors = [line for line in out.stderr.splitlines() if line.strip()]
            if errors and all(any(g in line.lower() for g in _GONE) for line in errors):
                return
            if not is_transient(out.text) or attempt >= self.retries:
                raise failure(out, transient=is_transient(out.text))
            attempt += 1
            self.shell.pause(attempt)
