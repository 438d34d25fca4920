"""employee imports: one row per spreadsheet import (counts and row errors)

Revision ID: 0003_employee_imports
Revises: 0002_registration
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_employee_imports"
down_revision = "0002_registration"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "employee_imports",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("credit_code", sa.String(18), sa.ForeignKey("employers.credit_code"), nullable=False),
        sa.Column("file_name", sa.String(200)),
        sa.Column("file_format", sa.String(8), nullable=False),
        sa.Column("file_sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("registered", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
    )
    op.create_index("ix_employee_imports_employer", "employee_imports", ["credit_code", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_employee_imports_employer", table_name="employee_imports")
    op.drop_table("employee_imports")
