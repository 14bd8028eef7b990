#!/bin/bash
# Regenerate the initial migration from the models (pre-release only).
set -e
cd /work/main
rm -f hpcflow/migrations/versions/*.py /tmp/regen.db
.venv/bin/python - <<'PY'
from alembic import command
from hpcflow.db import alembic_config
cfg = alembic_config("sqlite:////tmp/regen.db")
command.revision(cfg, message="initial schema", autogenerate=True, rev_id="0001")
PY
