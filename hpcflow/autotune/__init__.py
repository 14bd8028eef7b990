"""Auto-tune: recorded job stats -> resource requirements; escalation of killed runs.

Modules: samples (percentiles, pairing stats with results, rounding), groups (resource-requirement
groups and their jobs), torc (torc's measure-one-job-per-group flow), continuous (hpcflow's
per-group tuning in suggest/apply mode), escalation (retry a job killed at its memory or runtime
limit with more). Nothing is imported here so that engine modules can import one submodule
without pulling in the rest.
"""
