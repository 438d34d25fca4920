"""Sandbox settings (`SANDBOX_*`)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict


class SandboxSettings(BaseSettings):
    """Where the sandbox platform keeps its issuer keys."""

    model_config = SettingsConfigDict(env_prefix="SANDBOX_", extra="ignore")

    keys_dir: Path | None = None

    def resolved_keys_dir(self) -> Path:
        """SANDBOX_KEYS_DIR, or $SOCIALSEC_VAR_DIR/keys."""
        return Path(self.keys_dir) if self.keys_dir else Path(os.environ.get("SOCIALSEC_VAR_DIR", "var")) / "keys"
