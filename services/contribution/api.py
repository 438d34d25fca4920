"""Registration HTTP routes."""

from fastapi import APIRouter

router = APIRouter(prefix="/contribution/v1", tags=["contribution"])
