"""Enumerations every service uses, spelled exactly as the public contract (API.md) spells them.

The ones events carry live in `services.contracts.enums`, so producers and consumers agree.
"""

from services.contracts.enums import Category, Insurance

__all__ = ["Category", "Insurance"]
