"""Jinja2 templates shipped with hpcflow (sbatch scripts, EC2 user-data) and how to load them.

Every environment here uses StrictUndefined, so a misspelt variable fails loudly instead of
rendering as an empty string. Text that comes from a scheduler config (a workflow's owner) is
rendered in a sandbox: it may not reach Python internals of the server that renders it.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

ROOT = Path(__file__).resolve().parent

__all__ = ["ROOT", "TemplateError", "environment", "folder", "is_inline", "render"]


def folder(kind: str) -> Path:
    """The shipped folder of one family of templates ('slurm', 'aws')."""
    return ROOT / kind


def _quote(value: Any) -> str:
    """Shell-quote one value (lists become space-separated quoted words)."""
    if isinstance(value, list | tuple):
        return " ".join(shlex.quote(str(v)) for v in value)
    return shlex.quote(str(value))


def environment(kind: str, search: Sequence[str | Path] = (), *,
                sandboxed: bool = False) -> Environment:
    """An Environment that finds `search` folders first, then the shipped `kind` folder.

    Filters: `quote` (shell quoting). Blocks trim their newlines so templates stay readable.
    """
    cls = SandboxedEnvironment if sandboxed else Environment
    env = cls(loader=FileSystemLoader([*map(str, search), str(folder(kind))]),
              undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
              trim_blocks=True, lstrip_blocks=True)
    env.filters["quote"] = _quote
    return env


def is_inline(template: str) -> bool:
    """True when a config's `template` value is Jinja2 text rather than a template's name."""
    return "\n" in template or "{{" in template or "{%" in template


def render(kind: str, template: str, context: Mapping[str, Any],
           search: Sequence[str | Path] = ()) -> str:
    """Render a template by name (from `search`, then the shipped folder) or inline text.

    Inline text is sandboxed; names are looked up only inside the loader's folders, so a config
    cannot read arbitrary files on the server. Raises jinja2.TemplateError (e.g. an undefined
    variable, a missing template) for the caller to report.
    """
    if is_inline(template):
        return environment(kind, search, sandboxed=True).from_string(template).render(context)
    return environment(kind, search).get_template(template).render(context)
