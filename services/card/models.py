"""Card tables (private to this service)."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Metadata of the card service's own tables."""
