"""Registration HTTP routes."""

from fastapi import APIRouter

router = APIRouter(prefix="/registration/v1", tags=["registration"])
