"""drop the single-column workflow_id indexes of jobs and edges

Their composite indexes (ix_jobs_workflow_status_priority, uq_edges, ix_edges_to) lead with
workflow_id and serve every lookup and cascade; the extra index only slowed bulk inserts.

Revision ID: 0002
Revises: 0001
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_workflow_id")
    with op.batch_alter_table("edges", schema=None) as batch_op:
        batch_op.drop_index("ix_edges_workflow_id")


def downgrade() -> None:
    with op.batch_alter_table("edges", schema=None) as batch_op:
        batch_op.create_index("ix_edges_workflow_id", ["workflow_id"], unique=False)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_workflow_id", ["workflow_id"], unique=False)
