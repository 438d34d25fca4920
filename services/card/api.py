"""Registration HTTP routes."""

from fastapi import APIRouter

router = APIRouter(prefix="/card/v1", tags=["card"])
