"""policies: flexible base tiers, medical levies, account interest rates, residents' basic pension

Revision ID: 0004_regional_rules
Revises: 0003_payments

Seeds: the individual-account interest rates (记账利率) published each year by the
Ministry of Human Resources and Social Security and the Ministry of Finance
(2016 8.31%, 2017 7.12%, 2018 8.29%, 2019 7.61%, 2020 6.04%, 2021 6.69%,
2022 6.12%, 2023 3.97%, 2024 2.62%) on every seeded region; Beijing's fixed
3 CNY/month medical levy for employees (DOMAIN.md); residents' basic pension
figures are (sample).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_regional_rules"
down_revision = "0003_payments"
branch_labels = None
depends_on = None

ACCOUNT_INTEREST_RATES = {
    "2016": 831, "2017": 712, "2018": 829, "2019": 761, "2020": 604,
    "2021": 669, "2022": 612, "2023": 397, "2024": 262,
}
# Residents' basic pension, fen a month (sample figures).
_RESIDENT_BASIC = {"110000": 92400, "310000": 149000, "120000": 35200, "320000": 23300}
_LEVIES = {"110000": {"employee": 300}}


def upgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        batch.add_column(sa.Column("flexible_base_tiers_pct", sa.JSON(), nullable=False, server_default=sa.text("'[]'")))
        batch.add_column(sa.Column("medical_levies_fen", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("account_interest_rates", sa.JSON(), nullable=False, server_default=sa.text("'{}'")))
        batch.add_column(sa.Column("resident_basic_pension_fen", sa.BigInteger(), nullable=True))
    policies = sa.table(
        "policies", sa.column("region_code", sa.String()), sa.column("created_by", sa.String()),
        sa.column("medical_levies_fen", sa.JSON()), sa.column("account_interest_rates", sa.JSON()),
        sa.column("resident_basic_pension_fen", sa.BigInteger()),
    )
    for region, basic in _RESIDENT_BASIC.items():
        op.execute(
            sa.update(policies)
            .where(policies.c.region_code == region, policies.c.created_by == "seed")
            .values(account_interest_rates=ACCOUNT_INTEREST_RATES, resident_basic_pension_fen=basic,
                    medical_levies_fen=_LEVIES.get(region, {}))
        )


def downgrade() -> None:
    with op.batch_alter_table("policies") as batch:
        for name in ("resident_basic_pension_fen", "account_interest_rates", "medical_levies_fen",
                     "flexible_base_tiers_pct"):
            batch.drop_column(name)
