"""Submitters by name: slurm, local, aws, and plugins from the `hpcflow.submitters` entry points."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Any

# Built-in submitters, imported only when asked for (boto3 loads slowly).
BUILTIN = {
    "slurm": "submitters.slurm:SlurmSubmitter",
    "local": "submitters.local:LocalSubmitter",
    "aws": "submitters.aws:AwsSubmitter",
}
GROUP = "hpcflow.submitters"


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def names() -> list[str]:
    """Every submitter name that can be asked for: built-ins, then plugins."""
    found = list(BUILTIN)
    found += [ep.name for ep in entry_points(group=GROUP) if ep.name not in BUILTIN]
    return found


def submitter_class(name: str) -> type[Any]:
    """The Submitter class registered under `name`; plugins may not shadow built-ins."""
    if name in BUILTIN:
        return _load(BUILTIN[name])  # type: ignore[no-any-return]
    for ep in entry_points(group=GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise KeyError(f"no submitter named {name!r}; known: {', '.join(names())}")


def get_submitter(name: str, **options: Any) -> Any:
    """A new submitter instance; options go to its constructor (no I/O happens there)."""
    return submitter_class(name)(**options)
