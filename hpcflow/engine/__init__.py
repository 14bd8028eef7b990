"""Workflow logic: documents, job states, dependencies, claim/complete, reset, change detection."""
