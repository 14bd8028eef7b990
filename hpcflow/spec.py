"""Workflow specs: loading (JSON, JSON5, YAML), the spec model, and checking references by name.

A spec is torc's workflow_specification_model: a workflow with its files, user data, resource
requirements, schedulers, config and jobs, where jobs name what they use instead of holding
database ids. hpcflow extensions: a job `priority`, the extension fields of the workflow config
and of the scheduler configs. `_key`/`_id`/`_rev` on the documents are accepted and ignored
(a spec always creates new documents); the workflow's own `key` is honoured when free.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Required, cast

import json5
import yaml
from pydantic import ConfigDict, ValidationError, with_config
from pydantic import Field as PField

# pydantic needs typing_extensions.TypedDict before Python 3.12.
from typing_extensions import TypedDict

from hpcflow.errors import Invalid
from hpcflow.models.base import ApiModel
from hpcflow.models.data import FileIn, ResourceRequirementsIn, UserDataIn
from hpcflow.models.job import ScheduleParams
from hpcflow.models.schedulers import (
    SCHEDULER_COLLECTIONS,
    AwsSchedulerIn,
    LocalSchedulerIn,
    SlurmSchedulerIn,
)
from hpcflow.models.workflow import WorkflowConfigIn

# Problems listed in one error response; the count says how many there were in all.
MAX_LISTED = 20


def load_spec(path: str | Path) -> dict[str, Any]:
    """A workflow spec from JSON, JSON5 or YAML (by suffix); Invalid when it cannot be read."""
    path = Path(path)
    text = path.read_text()
    try:
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            data = json5.loads(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise Invalid(
            f"{path}: not a valid {path.suffix.lstrip('.') or 'JSON5'} file: {exc}", field="spec"
        ) from None
    if not isinstance(data, dict):
        raise Invalid(
            f"{path}: a workflow spec must be a mapping, got {type(data).__name__}", field="spec"
        )
    return data


@with_config(ConfigDict(extra="forbid"))
class JobSpec(TypedDict, total=False):
    """torc's job_specification_model: references are names of documents in the same spec.

    A TypedDict, not a model: 100,000 of them validate in a third of the time. Absent fields
    take the values in JOB_DEFAULTS.
    """

    name: str | None
    key: str | None
    command: Required[Annotated[str, PField(min_length=1)]]
    invocation_script: str | None
    cancel_on_blocking_job_failure: bool
    supports_termination: bool
    scheduler: str | None
    schedule_compute_nodes: ScheduleParams | None
    input_user_data: list[str]
    output_user_data: list[str]
    resource_requirements: str | None
    input_files: list[str]
    output_files: list[str]
    blocked_by: list[str]
    # hpcflow extension: claim order among ready jobs (higher first).
    priority: Annotated[int, PField(ge=-1_000_000, le=1_000_000)]


JOB_DEFAULTS: dict[str, Any] = {
    "name": None,
    "key": None,
    "invocation_script": None,
    "cancel_on_blocking_job_failure": True,
    "supports_termination": False,
    "scheduler": None,
    "schedule_compute_nodes": None,
    "resource_requirements": None,
    "priority": 0,
}


class SchedulerSpecs(ApiModel):
    """torc's workflow_specifications_schedulers (with hpcflow's extension fields)."""

    aws_schedulers: list[AwsSchedulerIn] = PField(default_factory=list)
    local_schedulers: list[LocalSchedulerIn] = PField(default_factory=list)
    slurm_schedulers: list[SlurmSchedulerIn] = PField(default_factory=list)


class WorkflowSpec(ApiModel):
    """torc's workflow_specification_model: a whole workflow in one document."""

    name: str | None = None
    key: str | None = None
    user: str
    description: str | None = None
    jobs: list[JobSpec] = PField(default_factory=list)
    files: list[FileIn] = PField(default_factory=list)
    user_data: list[UserDataIn] = PField(default_factory=list)
    resource_requirements: list[ResourceRequirementsIn] = PField(default_factory=list)
    schedulers: SchedulerSpecs | None = None
    config: WorkflowConfigIn | None = None


Ref = tuple[str, int]  # (scheduler collection, index in that list)


@dataclass
class JobRefs:
    """One job's references resolved to indexes into the spec's lists."""

    input_files: list[int] = field(default_factory=list)
    output_files: list[int] = field(default_factory=list)
    input_user_data: list[int] = field(default_factory=list)
    output_user_data: list[int] = field(default_factory=list)
    blocked_by: list[int] = field(default_factory=list)
    resource_requirements: int | None = None
    scheduler: Ref | None = None
    schedule_scheduler: Ref | None = None


def where(loc: Sequence[Any]) -> str:
    """A pydantic location as a path: ('jobs', 3, 'command') -> 'jobs[3].command'."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or "body"


def problem_error(problems: list[tuple[str, str]], what: str) -> Invalid:
    """One 422 naming the first culprit and listing up to MAX_LISTED problems."""
    listed = [f"{loc}: {msg}" for loc, msg in problems[:MAX_LISTED]]
    more = len(problems) - 1
    tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return Invalid(
        f"invalid {what}: {listed[0]}{tail}",
        field=problems[0][0],
        errors=listed,
        num_errors=len(problems),
    )


def parse_spec(data: Any) -> tuple[WorkflowSpec, list[JobRefs]]:
    """Validate a spec's fields and references; Invalid names every culprit found."""
    if not isinstance(data, dict):
        raise Invalid(
            f"a workflow specification must be a JSON object, got {type(data).__name__}",
            field="body",
        )
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        found = [(where(e["loc"]), e["msg"]) for e in exc.errors()]
        raise problem_error(found, "workflow specification") from None
    problems: list[tuple[str, str]] = []
    refs = _Resolver(spec, problems).resolve()
    if not problems:
        _check_cycles(spec, refs, problems)
    if problems:
        raise problem_error(problems, "workflow specification")
    return spec, refs


def _index(items: Sequence[Any], where_: str, problems: list[tuple[str, str]]) -> dict[str, int]:
    """Name -> position; a repeated name is a problem (unnamed items cannot be referenced)."""
    found: dict[str, int] = {}
    for i, item in enumerate(items):
        name = item.get("name") if isinstance(item, dict) else item.name
        if name is None:
            continue
        if name in found:
            problems.append(
                (f"{where_}[{i}].name", f"duplicate name {name!r} (also {where_}[{found[name]}])")
            )
        else:
            found[name] = i
    return found


class _Resolver:
    """Turns each job's names into indexes, collecting every undefined or duplicate name."""

    def __init__(self, spec: WorkflowSpec, problems: list[tuple[str, str]]) -> None:
        self.spec = spec
        self.problems = problems
        self.files = _index(spec.files, "files", problems)
        self.user_data = _index(spec.user_data, "user_data", problems)
        self.rrs = _index(spec.resource_requirements, "resource_requirements", problems)
        self.jobs = _index(spec.jobs, "jobs", problems)
        scheds = spec.schedulers or SchedulerSpecs()
        self.schedulers = {
            c: _index(getattr(scheds, c), f"schedulers.{c}", problems)
            for c in SCHEDULER_COLLECTIONS
        }
        self.job_keys: dict[str, int] = {}

    def resolve(self) -> list[JobRefs]:
        producer: dict[int, int] = {}
        storer: dict[int, int] = {}
        out = []
        for n, job in enumerate(self.spec.jobs):
            at = f"jobs[{n}]"
            r = JobRefs(
                input_files=self._names(n, job, "input_files", self.files, "file"),
                output_files=self._names(n, job, "output_files", self.files, "file"),
                input_user_data=self._names(n, job, "input_user_data", self.user_data, "user data"),
                output_user_data=self._names(
                    n, job, "output_user_data", self.user_data, "user data"
                ),
                blocked_by=self._names(n, job, "blocked_by", self.jobs, "job"),
            )
            if n in r.blocked_by:
                self.problems.append((f"{at}.blocked_by", "a job cannot block itself"))
            rr = job.get("resource_requirements")
            if rr:
                found = self.rrs.get(rr)
                if found is None:
                    self.problems.append(
                        (f"{at}.resource_requirements", f"no resource requirements named {rr!r}")
                    )
                r.resource_requirements = found
            scheduler = job.get("scheduler")
            if scheduler:
                r.scheduler = self._scheduler(scheduler, f"{at}.scheduler")
            params = job.get("schedule_compute_nodes")
            if params is not None:
                r.schedule_scheduler = self._scheduler(
                    params.scheduler_id, f"{at}.schedule_compute_nodes.scheduler_id"
                )
            self._single_writer(n, r.output_files, producer, "file", self.spec.files, "produced")
            self._single_writer(
                n, r.output_user_data, storer, "user data", self.spec.user_data, "stored"
            )
            self._key(job.get("key"), n)
            out.append(r)
        return out

    def _names(
        self, n: int, job: JobSpec, field: str, index: dict[str, int], what: str
    ) -> list[int]:
        """Positions of the documents a job's list field names; unknown names are problems."""
        names = cast("list[str] | None", job.get(field))
        if not names:
            return []
        found = list(map(index.get, names))
        if None in found:
            for name, i in zip(names, found, strict=True):
                if i is None:
                    self.problems.append((f"jobs[{n}].{field}", f"no {what} named {name!r}"))
            return [i for i in found if i is not None]
        return cast("list[int]", found)

    def _scheduler(self, ref: str, at: str) -> Ref | None:
        """'slurm_schedulers/debug' or a bare name that only one scheduler list holds."""
        coll, sep, name = ref.partition("/")
        if sep and coll in SCHEDULER_COLLECTIONS:
            i = self.schedulers[coll].get(name)
            if i is None:
                self.problems.append((at, f"no {coll} scheduler named {name!r}"))
                return None
            return coll, i
        hits = [(c, names[ref]) for c, names in self.schedulers.items() if ref in names]
        if len(hits) == 1:
            return hits[0]
        if hits:
            self.problems.append(
                (
                    at,
                    f"scheduler name {ref!r} is in "
                    f"{' and '.join(c for c, _ in hits)}; write e.g. "
                    f"'{hits[0][0]}/{ref}'",
                )
            )
        else:
            self.problems.append((at, f"no scheduler named {ref!r}"))
        return None

    def _single_writer(
        self,
        job: int,
        outputs: list[int],
        writers: dict[int, int],
        what: str,
        items: Sequence[Any],
        verb: str,
    ) -> None:
        """A file (or user data) has one producer, so its consumers know whom to wait for."""
        at = f"jobs[{job}].{'output_files' if what == 'file' else 'output_user_data'}"
        for i in outputs:
            other = writers.setdefault(i, job)
            if other != job:
                self.problems.append(
                    (
                        at,
                        f"{what} {items[i].name!r} is already {verb} by "
                        f"{_job_label(self.spec, other)}",
                    )
                )
                return

    def _key(self, key: str | None, n: int) -> None:
        if key is None:
            return
        if not key.isdigit() or int(key) < 1:
            self.problems.append(
                (f"jobs[{n}].key", f"{key!r} is not a key (keys are positive integers)")
            )
        elif key in self.job_keys:
            self.problems.append(
                (f"jobs[{n}].key", f"duplicate key {key!r} (also jobs[{self.job_keys[key]}])")
            )
        else:
            self.job_keys[key] = n


def _job_label(spec: WorkflowSpec, n: int) -> str:
    name = spec.jobs[n].get("name")
    return f"job {name!r}" if name is not None else f"jobs[{n}]"


def _check_cycles(spec: WorkflowSpec, refs: list[JobRefs], problems: list[tuple[str, str]]) -> None:
    """Jobs waiting on each other (through blocked_by, files or user data) would never run."""
    n = len(refs)
    after: list[set[int]] = [set() for _ in range(n)]
    consumers_f: dict[int, list[int]] = {}
    consumers_u: dict[int, list[int]] = {}
    for j, r in enumerate(refs):
        for b in r.blocked_by:
            after[b].add(j)
        for f in r.input_files:
            consumers_f.setdefault(f, []).append(j)
        for u in r.input_user_data:
            consumers_u.setdefault(u, []).append(j)
    for j, r in enumerate(refs):
        for f in r.output_files:
            after[j].update(c for c in consumers_f.get(f, ()) if c != j)
        for u in r.output_user_data:
            after[j].update(c for c in consumers_u.get(u, ()) if c != j)
    waiting = [0] * n
    for nexts in after:
        for k in nexts:
            waiting[k] += 1
    queue = deque(j for j in range(n) if waiting[j] == 0)
    done = 0
    while queue:
        j = queue.popleft()
        done += 1
        for k in after[j]:
            waiting[k] -= 1
            if waiting[k] == 0:
                queue.append(k)
    if done == n:
        return
    # Walk backwards through jobs still waiting until one repeats: that is a cycle.
    before: dict[int, int] = {}
    for j in range(n):
        for k in after[j]:
            if waiting[k] and waiting[j]:
                before.setdefault(k, j)
    start = next(j for j in range(n) if waiting[j])
    path, seen = [start], {start}
    while (prev := before[path[-1]]) not in seen:
        path.append(prev)
        seen.add(prev)
    cycle = [prev, *reversed(path[path.index(prev) + 1 :]), prev]
    names = " -> ".join(_job_label(spec, j) for j in cycle)
    problems.append(
        (f"jobs[{cycle[0]}]", f"dependency cycle: {names} (through blocked_by, files or user data)")
    )
