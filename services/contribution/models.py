"""Contribution tables (private to this service)."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Metadata of the contribution service's own tables."""
