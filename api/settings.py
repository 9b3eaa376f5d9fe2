"""The API's settings, from the environment (DEEDCHAIN_API_*) or a .env file."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEEDCHAIN_API_", env_file=".env", extra="ignore")

    database_url: str = Field(
        "sqlite:///.deedchain/api.db",
        description="the API's own tables (brokers, API keys, idempotency): sqlite:///FILE or postgresql://",
    )
    rate_limit_per_second: float = Field(20.0, gt=0, description="sustained requests per second per key")
    rate_limit_burst: int = Field(40, ge=1, description="requests a key may make at once")
    max_body_bytes: int = Field(64 * 1024, ge=1, description="larger request bodies get 413")
    sse_poll_interval: float = Field(0.5, gt=0, description="seconds between polls of a deal's events")
    sse_keepalive_seconds: float = Field(15.0, gt=0, description="comment line sent when nothing happens")
