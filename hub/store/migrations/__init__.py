"""Alembic migrations of the store (run by ``hub.store.migrate``)."""
