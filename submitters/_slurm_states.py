"""Slurm job states as NodeStates, and parsers for squeue, sacct and sbatch output."""

from __future__ import annotations

import re

from submitters.base import NodeState

# Every state squeue or sacct may print (long form). Jobs that hold or wait for an allocation
# are pending; jobs whose script may still run are running (COMPLETING: the epilog runs and the
# final state is not known yet, so it is not called ended); the rest have ended.
STATES: dict[str, NodeState] = {
    "PENDING": NodeState.PENDING,
    "CONFIGURING": NodeState.PENDING,
    "REQUEUED": NodeState.PENDING,
    "REQUEUE_HOLD": NodeState.PENDING,
    "REQUEUE_FED": NodeState.PENDING,
    "RESV_DEL_HOLD": NodeState.PENDING,
    "RUNNING": NodeState.RUNNING,
    "COMPLETING": NodeState.RUNNING,
    "SUSPENDED": NodeState.RUNNING,
    "STOPPED": NodeState.RUNNING,
    "SIGNALING": NodeState.RUNNING,
    "STAGE_OUT": NodeState.RUNNING,
    "RESIZING": NodeState.RUNNING,
    "COMPLETED": NodeState.COMPLETED,
    "FAILED": NodeState.FAILED,
    "NODE_FAIL": NodeState.FAILED,
    "BOOT_FAIL": NodeState.FAILED,
    "OUT_OF_MEMORY": NodeState.FAILED,
    "SPECIAL_EXIT": NodeState.FAILED,
    "CANCELLED": NodeState.CANCELED,
    "PREEMPTED": NodeState.CANCELED,
    "REVOKED": NodeState.CANCELED,
    "TIMEOUT": NodeState.TIMEOUT,
    "DEADLINE": NodeState.TIMEOUT,
}
# squeue's compact codes, in case a site's SQUEUE_FORMAT-like setting makes %T print them.
SHORT = {
    "PD": "PENDING",
    "CF": "CONFIGURING",
    "RQ": "REQUEUED",
    "RH": "REQUEUE_HOLD",
    "RF": "REQUEUE_FED",
    "RD": "RESV_DEL_HOLD",
    "R": "RUNNING",
    "CG": "COMPLETING",
    "S": "SUSPENDED",
    "ST": "STOPPED",
    "SI": "SIGNALING",
    "SO": "STAGE_OUT",
    "RS": "RESIZING",
    "CD": "COMPLETED",
    "F": "FAILED",
    "NF": "NODE_FAIL",
    "BF": "BOOT_FAIL",
    "OOM": "OUT_OF_MEMORY",
    "SE": "SPECIAL_EXIT",
    "CA": "CANCELLED",
    "PR": "PREEMPTED",
    "RV": "REVOKED",
    "TO": "TIMEOUT",
    "DL": "DEADLINE",
}
JOB_ID = re.compile(r"^\d+(?:_\d+)?$")
_PARSABLE = re.compile(r"^(\d+)(?:;(\S+))?$")
_MARKER = re.compile(r"submission=([0-9a-f]+)")


def node_state(text: str) -> NodeState:
    """The NodeState of a Slurm state such as 'RUNNING', 'CANCELLED by 1000' or 'CA'."""
    word = text.strip().split(" ", 1)[0].rstrip("+").upper()
    return STATES.get(SHORT.get(word, word), NodeState.UNKNOWN)


def parse_table(text: str) -> dict[str, NodeState]:
    """'id|state' lines (squeue --format=%i|%T, sacct --parsable2) by job id; first line wins."""
    found: dict[str, NodeState] = {}
    for line in text.splitlines():
        job_id, sep, state = line.strip().partition("|")
        if sep and JOB_ID.match(job_id) and job_id not in found:
            found[job_id] = node_state(state.split("|", 1)[0])
    return found


def parse_parsable(stdout: str) -> tuple[str, str | None] | None:
    """(job id, cluster) from `sbatch --parsable` ('123' or '123;cluster'); None if absent."""
    for line in reversed(stdout.strip().splitlines()):
        match = _PARSABLE.match(line.strip())
        if match:
            return match.group(1), match.group(2)
    return None


def find_marker(text: str, marker: str) -> str | None:
    """The job id of the 'id|comment' line (squeue %i|%k) whose comment carries `marker`."""
    for line in text.splitlines():
        job_id, _sep, comment = line.strip().partition("|")
        found = _MARKER.search(comment)
        if found and found.group(1) == marker and JOB_ID.match(job_id):
            return job_id
    return None
