"""Registration HTTP routes."""

from fastapi import APIRouter

router = APIRouter(prefix="/review/v1", tags=["review"])
