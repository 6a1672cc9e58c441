"""The books' schema: `tables` (SQLAlchemy Core) and `migrations` (Alembic, run by `migrate.upgrade`)."""
