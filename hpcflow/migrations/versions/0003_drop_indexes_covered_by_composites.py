"""drop jobs and results indexes that a wider index already leads with

ix_jobs_claim_grm, ix_jobs_claim_gmr and ix_jobs_demand all start with (workflow_id, status),
and ix_results_workflow_job_run with workflow_id, so the two narrower indexes only cost
bulk inserts and completions a write each.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_workflow_status_priority")
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.drop_index("ix_results_workflow_id")


def downgrade() -> None:
    with op.batch_alter_table("results", schema=None) as batch_op:
        batch_op.create_index("ix_results_workflow_id", ["workflow_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_jobs_workflow_status_priority", ["workflow_id", "status", "priority"], unique=False
        )
