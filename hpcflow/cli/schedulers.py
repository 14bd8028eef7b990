"""`hpcflow slurm|local|aws add-config|list-configs|modify-config`: scheduler configs over HTTP.

`hpcflow schedule-nodes` and `hpcflow nodes ...` live in hpcflow/cli/nodes.py and are
re-exported here (main.py looks for them in this module).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import click

from hpcflow.cli.output import OUTPUT, URL, connect, emit, fail
from hpcflow.client import Client, ServerUnreachable
from hpcflow.errors import HpcflowError, NotFound

F = TypeVar("F", bound=Callable[..., Any])
KINDS = ("slurm", "local", "aws")


def http_errors(fn: F) -> F:
    """Turn the client's errors into one `Error: ...` line and a non-zero exit."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ServerUnreachable:
            fail(
                f"cannot reach the hpcflow server at {kwargs.get('url')}; is it running? "
                "Set --url or HPCFLOW_URL."
            )
        except HpcflowError as exc:
            fail(exc.message)

    return wrapper  # type: ignore[return-value]


def wf_path(key: str) -> str:
    """The workflow's URL path (the key comes from the command line: quote it)."""
    return f"/workflows/{quote(key, safe='')}"


def config_ref(text: str) -> tuple[str, str]:
    """(collection, key) of 'slurm_schedulers/3' (or 'slurm/3'); BadParameter otherwise."""
    collection, sep, key = text.partition("/")
    if collection in KINDS:
        collection += "_schedulers"
    if not sep or not key or collection.removesuffix("_schedulers") not in KINDS:
        raise click.BadParameter(
            f"{text!r} is not a scheduler config id; use e.g. "
            "slurm_schedulers/3, local_schedulers/1 or aws_schedulers/2"
        )
    return collection, key


def get_config(api: Client, workflow: str, collection: str, key: str) -> dict[str, Any]:
    """The config document, or a clear error naming what is missing."""
    api.get(wf_path(workflow))  # a missing workflow is its own error
    try:
        return dict(api.get(f"{wf_path(workflow)}/{collection}/{quote(key, safe='')}"))
    except NotFound:
        fail(
            f"workflow {workflow} has no scheduler config {collection}/{key}; see "
            f"`hpcflow {collection.removesuffix('_schedulers')} list-configs {workflow}`"
        )


@dataclass(frozen=True)
class Opt:
    """One config field as a command-line option."""

    field: str
    type: Any = str
    help: str = ""
    flag: bool = False
    multiple: bool = False

    def option(self, *, required: bool = False) -> Callable[[F], F]:
        """The click option (flags are --x/--no-x; unset means 'leave as is')."""
        name = "--" + self.field.replace("_", "-")
        if self.flag:
            return click.option(f"{name}/--no-{name[2:]}", self.field, default=None, help=self.help)
        return click.option(
            name,
            self.field,
            type=self.type,
            required=required,
            multiple=self.multiple,
            help=self.help,
        )


def _text_or_file(value: str) -> str:
    """'@path' reads the file (templates, user-data); anything else is the value itself."""
    if value.startswith("@"):
        try:
            return Path(value[1:]).read_text()
        except OSError as exc:
            raise click.BadParameter(f"cannot read {value[1:]}: {exc}") from exc
    return value


def _tags(values: tuple[str, ...]) -> dict[str, str]:
    pairs = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"tag {item!r} is not KEY=VALUE", param_hint="--tag")
        pairs[name] = value
    return pairs


COMMON = (
    Opt("name", help="A name for the config."),
    Opt("max_nodes", click.IntRange(min=0), "Most nodes the autoscaler keeps at once."),
    Opt("max_queued", click.IntRange(min=0), "Most nodes waiting in a queue at once."),
)
POS_INT = click.IntRange(min=1)
FIELDS: dict[str, tuple[Opt, ...]] = {
    "slurm": (
        Opt("partition"),
        Opt("qos"),
        Opt("nodes", POS_INT, "Nodes per allocation."),
        Opt("walltime", help="e.g. 04:00:00, 1-00:00:00 or P0DT4H."),
        Opt("mem", help="Memory per node as sbatch takes it, e.g. 180G."),
        Opt("gres", help="e.g. gpu:2."),
        Opt("tmp", help="Local disk per node, e.g. 100G."),
        Opt("ntasks_per_node", POS_INT),
        Opt("cpus_per_task", POS_INT),
        Opt("gpus", click.IntRange(min=0), "GPUs per node."),
        Opt("constraint"),
        Opt("exclusive", flag=True, help="Whole nodes only."),
        Opt("extra", help="More sbatch options, e.g. '--mail-type=END --requeue'."),
        Opt("template", help="A template name, or inline Jinja2 text; @FILE reads it."),
    ),
    "local": (
        Opt("num_cpus", POS_INT, "CPUs each runner offers (default: all)."),
        Opt("memory", help="Memory each runner offers, e.g. 8g (default: all)."),
    ),
    "aws": (
        Opt("region"),
        Opt("ami"),
        Opt("instance_type"),
        Opt("subnet_id"),
        Opt("security_group_ids", help="Security group id; repeat for more.", multiple=True),
        Opt("key_name"),
        Opt("iam_instance_profile"),
        Opt("spot", flag=True, help="Request spot instances."),
        Opt("max_price", help="Highest spot price per hour."),
        Opt("root_volume_gb", POS_INT),
        Opt("tags", help="KEY=VALUE; repeat for more.", multiple=True),
        Opt("user_data_extra", help="Shell lines run before the runner; @FILE reads them."),
        Opt("pip_spec", help="What `pip install` gets hpcflow from on the instance."),
        Opt("num_cpus", POS_INT),
        Opt("memory"),
        Opt("num_gpus", click.IntRange(min=0)),
        Opt("walltime", help="Longest life of an instance, e.g. P0DT4H."),
    ),
}
COLUMNS = {
    "slurm": [
        "key",
        "name",
        "account",
        "partition",
        "qos",
        "nodes",
        "walltime",
        "mem",
        "gres",
        "cpus_per_task",
        "gpus",
        "max_nodes",
        "max_queued",
        "is_paused",
    ],
    "local": ["key", "name", "num_cpus", "memory", "max_nodes", "max_queued", "is_paused"],
    "aws": [
        "key",
        "name",
        "region",
        "instance_type",
        "ami",
        "spot",
        "num_cpus",
        "memory",
        "num_gpus",
        "walltime",
        "max_nodes",
        "max_queued",
        "is_paused",
    ],
}


def body_of(kind: str, given: dict[str, Any]) -> dict[str, Any]:
    """The options that were given, as document fields."""
    body = {k: v for k, v in given.items() if v is not None and v != ()}
    for name in ("template", "user_data_extra"):
        if name in body:
            body[name] = _text_or_file(body[name])
    if "tags" in body:
        body["tags"] = _tags(body["tags"])
    if "security_group_ids" in body:
        body["security_group_ids"] = [
            s for v in body["security_group_ids"] for s in v.split(",") if s
        ]
    return body


def show_doc(doc: dict[str, Any], output: str, title: str) -> None:
    """One config as a field/value table, or as JSON."""
    rows = [{"field": k, "value": v} for k, v in doc.items() if k not in ("_id", "_rev")]
    emit(rows, ["field", "value"], output, title=title, raw=doc)


def _apply(fn: F, options: list[Callable[[F], F]]) -> F:
    for option in reversed(options):
        fn = option(fn)
    return fn


def make_group(kind: str) -> click.Group:
    """The add-config / list-configs / modify-config group of one scheduler kind."""
    collection = f"{kind}_schedulers"
    opts = [*COMMON, *FIELDS[kind]]
    group = click.Group(kind, help=f"Manage the {kind} scheduler configs of a workflow.")

    @http_errors
    def add(workflow: str, url: str, output: str, **given: Any) -> None:
        doc = connect(url).post(f"{wf_path(workflow)}/{collection}", body_of(kind, given))
        show_doc(doc, output, f"added {doc['_id']}")

    extra = (
        [
            click.option(
                "--account", "account", required=True, help="Account (allocation) to charge."
            )
        ]
        if kind == "slurm"
        else []
    )
    group.command("add-config", help=f"Add a {kind} scheduler config to WORKFLOW.")(
        _apply(add, [click.argument("workflow"), *extra, *(o.option() for o in opts), URL, OUTPUT])
    )

    @http_errors
    def list_configs(workflow: str, url: str, output: str) -> None:
        docs = list(connect(url).iter_items(f"{wf_path(workflow)}/{collection}"))
        rows = [{**d, "key": d["_key"]} for d in docs]
        emit(rows, COLUMNS[kind], output, title=f"{kind} scheduler configs", raw=docs)

    group.command("list-configs", help=f"List the {kind} scheduler configs of WORKFLOW.")(
        _apply(list_configs, [click.argument("workflow"), URL, OUTPUT])
    )

    @http_errors
    def modify(workflow: str, key: str, url: str, output: str, **given: Any) -> None:
        changes = body_of(kind, given)
        if not changes:
            fail("nothing to change: give at least one field option (see --help)")
        api = connect(url)
        key = key.rpartition("/")[2]  # '3' or 'slurm_schedulers/3'
        current = get_config(api, workflow, collection, key)
        body = {k: v for k, v in current.items() if k != "_id"}
        doc = api.put(
            f"{wf_path(workflow)}/{collection}/{quote(key, safe='')}", {**body, **changes}
        )
        show_doc(doc, output, f"modified {doc['_id']}")

    account = (
        [click.option("--account", "account", help="Account to charge.")] if kind == "slurm" else []
    )
    group.command("modify-config", help=f"Change fields of {kind} config KEY of WORKFLOW.")(
        _apply(
            modify,
            [
                click.argument("workflow"),
                click.argument("key"),
                *account,
                *(o.option() for o in opts),
                URL,
                OUTPUT,
            ],
        )
    )
    return group


slurm_group = make_group("slurm")
local_group = make_group("local")
aws_group = make_group("aws")
