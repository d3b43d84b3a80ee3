"""users search indexes: trigram GIN indexes serving the user list's q (PostgreSQL only)

Revision ID: 3f6c2a9e1d47
Revises: 7b0286b6a884
Create Date: 2026-11-29 11:30:00.000000

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '3f6c2a9e1d47'
down_revision = '7b0286b6a884'
branch_labels = None
depends_on = None

# app.services.users.list_users filters with `phone LIKE '%q%'`, `email LIKE '%q%'` and `lower(nickname) LIKE
# '%q%'`: each index's expression is the one a LIKE reads, or the planner cannot use it. The names are in
# app.models.user.SEARCH_INDEXES too (autogenerate leaves them alone: the models, shared with SQLite and MySQL,
# do not declare them).
INDEXES = {
    'ix_users_phone_trgm': 'phone',
    'ix_users_email_trgm': 'email',
    'ix_users_nickname_trgm': 'lower(nickname)',
}


def upgrade():
    # SQLite and MySQL/MariaDB have no index for LIKE '%…%': q scans the table there.
    bind = op.get_bind()
    if bind.dialect.name != 'postgresql':
        return
    # pg_trgm is a trusted extension (PostgreSQL 13+): a database owner may create it without being superuser.
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    # The operator class is named with the schema the extension lives in, which need not be on search_path.
    schema = bind.execute(sa.text(
        "SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_trgm'")).scalar_one()
    # A plain CREATE INDEX blocks writes to users while it builds (about 10 s per million rows here); on a large
    # live table, create them CONCURRENTLY by hand first (same names), and this migration keeps them.
    for name, expression in INDEXES.items():
        op.execute(f'CREATE INDEX IF NOT EXISTS {name} ON users USING gin ({expression} {schema}.gin_trgm_ops)')


def downgrade():
    # The extension stays: other tables or databases' objects may use it, and dropping it needs its owner.
    if op.get_bind().dialect.name != 'postgresql':
        return
    for name in INDEXES:
        op.execute(f'DROP INDEX IF EXISTS {name}')
