"""The autoscaler: each tick turns ready jobs into node launches, polls nodes, recovers lost ones.

Modules: demand (node shapes, bin packing), supply (reading a workflow), scale (launch and
release), recovery (node leases), guards (pause after failures), lease and loop (one acting loop
across workers and replicas), tick (the entry point tests call).
"""

from __future__ import annotations

from hpcflow.autoscale.loop import Autoscaler, run_once, start
from hpcflow.autoscale.report import TickReport
from hpcflow.autoscale.tick import tick

__all__ = ["Autoscaler", "TickReport", "run_once", "start", "tick"]
