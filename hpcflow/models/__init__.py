"""SQLModel tables and API schemas, one module per resource family."""

from hpcflow.models.autoscale import AutoscalerLease
from hpcflow.models.autotune import AutoTuneGroup
from hpcflow.models.data import File, ResourceRequirements, UserData
from hpcflow.models.events import Event
from hpcflow.models.graph import EDGE_COLLECTIONS, Edge
from hpcflow.models.job import Job, Result
from hpcflow.models.logs import JobLog
from hpcflow.models.nodes import (
    ComputeNode,
    ComputeNodeStats,
    JobProcessStats,
    ScheduledComputeNode,
)
from hpcflow.models.schedulers import AwsScheduler, LocalScheduler, SlurmScheduler
from hpcflow.models.workflow import Workflow, WorkflowConfig, WorkflowStatus

__all__ = [
    "EDGE_COLLECTIONS",
    "AutoTuneGroup",
    "AutoscalerLease",
    "AwsScheduler",
    "ComputeNode",
    "ComputeNodeStats",
    "Edge",
    "Event",
    "File",
    "Job",
    "JobLog",
    "JobProcessStats",
    "LocalScheduler",
    "ResourceRequirements",
    "Result",
    "ScheduledComputeNode",
    "SlurmScheduler",
    "UserData",
    "Workflow",
    "WorkflowConfig",
    "WorkflowStatus",
]
