"""Review tables (private to this service)."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Metadata of the review service's own tables."""
