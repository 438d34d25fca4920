"""Registration tables (private to this service)."""

from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    """Metadata of the registration service's own tables."""
