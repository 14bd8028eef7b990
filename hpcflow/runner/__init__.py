"""The pull-based job runner: claim jobs that fit, run them as processes, report and measure.

Modules: loop (the main loop), dispatch (claim/start/finish, the lookahead queue), reports
(batched reports and their recovery), reporter (the report in flight), processes (supervision),
monitor (psutil sampling), resources (CPUs, memory, GPUs, walltime), logs (stdout/stderr tails),
node (the compute node document), remote (HTTP calls with retry), embedded (a local server),
local (`hpcflow run`).
"""
