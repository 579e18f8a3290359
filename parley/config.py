"""Configuration from environment variables (PARLEY_*) and an optional TOML file.

Environment variables win over the file, the file over the defaults. Every
default is safe for one machine: loopback only, data under ./data.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from parley.domain.push import DEFAULT_WEBPUSH_HOSTS


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    data_dir: Path = Path("data")
    database_url: str = ""
    media_dir: Path | None = None
    node_id: str = ""

    # Many nodes: Redis for fan-out and presence, S3 for images.
    redis_url: str = ""
    redis_prefix: str = "parley:"
    presence_ttl_s: float = Field(30.0, gt=0)
    reconcile_interval_s: float = Field(10.0, gt=0)
    presence_max_chat_members: int = Field(64, ge=2)
    receipts_max_chat_members: int = Field(100, ge=2)
    s3_bucket: str = ""
    s3_prefix: str = ""
    s3_endpoint_url: str = ""
    s3_region: str = ""
    s3_access_key_id: str = ""
    s3_secret_access_key: str = ""

    # Push to devices without a live connection; a service with no
    # credentials configured is not used.
    push_show_text: bool = False
    push_delay_ms: int = Field(1000, ge=0, le=60_000)
    push_lease_s: float = Field(30.0, gt=0)
    push_concurrency: int = Field(16, ge=1)
    apns_key_file: Path | None = None
    apns_key_id: str = ""
    apns_team_id: str = ""
    apns_bundle_id: str = ""
    apns_url: str = "https://api.push.apple.com"
    apns_ca_file: Path | None = None
    fcm_service_account_file: Path | None = None
    fcm_url: str = "https://fcm.googleapis.com"
    webpush_vapid_private_key: str = ""
    webpush_subject: str = ""
    webpush_ca_file: Path | None = None
    webpush_allowed_hosts: list[str] = list(DEFAULT_WEBPUSH_HOSTS)

    # Tokens: HS256 with a shared secret, or RS256/ES256 with a public key.
    jwt_secret: str = ""
    jwt_public_key_file: Path | None = None
    jwt_algorithms: list[str] = ["HS256"]
    jwt_issuer: str | None = None
    jwt_audience: str | None = None
    jwt_leeway_s: int = Field(30, ge=0)

    max_text_characters: int = Field(2000, ge=1)
    max_images_per_message: int = Field(3, ge=0)
    max_image_bytes: int = Field(1_048_576, ge=1)
    max_image_pixels: int = Field(16_777_216, ge=1)
    max_group_members: int = Field(1024, ge=2)
    max_frame_bytes: int = Field(65_536, ge=1024)

    # Compression costs each connection about 50 KiB of zlib state; frames
    # are small JSON, so it is off unless asked for.
    ws_compression: bool = False
    heartbeat_interval_s: float = Field(20.0, gt=0)
    heartbeat_timeout_s: float = Field(20.0, gt=0)
    send_queue_frames: int = Field(1000, ge=1)
    send_timeout_s: float = Field(10.0, gt=0)
    catch_up_page: int = Field(500, ge=1)

    log_level: str = Field("info", pattern="^(debug|info|warning|error)$")
    log_format: str = Field("json", pattern="^(json|console)$")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.data_dir / 'parley.db'}"

    @property
    def resolved_media_dir(self) -> Path:
        return self.media_dir or self.data_dir / "media"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: tuple[PydanticBaseSettingsSource, ...] = (init_settings, env_settings)
        config_file = os.environ.get("PARLEY_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise ConfigurationError(f"PARLEY_CONFIG names no file: {config_file}")
            sources += (TomlConfigSettingsSource(settings_cls, Path(config_file)),)
        return sources

    @property
    def url(self) -> str:
        """Where this configuration's server answers, for the client commands."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


class ConfigurationError(ValueError):
    """The configuration cannot be read; the sentence says what to fix."""


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment and PARLEY_CONFIG, then ``overrides``."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in problem['loc'])}: {problem['msg']}"
            for problem in error.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from None
    except (OSError, ValueError) as error:
        if isinstance(error, ConfigurationError):
            raise
        raise ConfigurationError(f"cannot read the configuration: {error}") from None
