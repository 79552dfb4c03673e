"""Deployment settings of the server, in one place: defaults, validation, ACTIONREC_* variables.

Each setting is a field of `ServerSettings`; its environment variable is ``ACTIONREC_`` plus
the field name in capitals (the model: ``ACTIONREC_MODEL``). `actionrec serve` makes its
options from these fields (their `json_schema_extra` says where an option differs) and passes only
the flags a user gave, so a flag beats its variable, which beats the default.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENV_PREFIX = "ACTIONREC_"
# How `actionrec serve` offers a field (see actionrec.cli.config_options); every other field is an
# option named after it, whose help is its description.
NOT_AN_OPTION: dict[str, Any] = {"cli": False}
TEXT: dict[str, Any] = {"type": str}  # a comma-separated list, given as one value


@dataclass(frozen=True)
class UploadLimits:
    max_bytes: int
    idle_timeout_s: float  # no byte for this long: 408; also the grace before the rate counts
    min_rate: float  # bytes per second, in each window of idle_timeout_s


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore", populate_by_name=True)

    model_path: Path | None = Field(None, validation_alias=AliasChoices("model_path", "ACTIONREC_MODEL"),
                                    description="the exported model.onnx to serve", json_schema_extra=NOT_AN_OPTION)
    host: str = Field("127.0.0.1", description="interface to listen on (0.0.0.0 for all)")
    port: int = Field(8000, ge=0, le=65535, description="port to listen on")
    max_upload_mb: float = Field(100.0, gt=0, description="larger bodies get 413")
    max_duration_s: float = Field(600.0, gt=0, description="longer videos get 422")
    decode_timeout_s: float = Field(60.0, gt=0, description="per upload; then 422 and the worker is replaced")
    workers: int = Field(2, ge=1, description="decoding processes (and inference threads)")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime threads per inference, always (default: every "
                                "core for a request alone, half when requests overlap or a timeline waits on its "
                                "decoder)")
    max_pending: int = Field(8, ge=1, description="predictions (decoding and the model) in progress before 503")
    uncertain_below: float | None = Field(None, ge=0, le=1, description="flag answers uncertain under this top "
                                          "confidence instead of the threshold the model file carries (0.5 for "
                                          "files without one)")
    max_uploads: int = Field(256, ge=1, description="uploads being received at once before 503")
    upload_budget_mb: float = Field(2048.0, gt=0, description="megabytes of uploads in progress at once (arriving, "
                                    "or on disk awaiting their answer) before 503; kept under 90% of the temporary "
                                    "folder's free space at start")
    max_connections: int | None = Field(None, ge=1, description="open connections at once before new ones get "
                                        "503 (default: what the descriptor limit leaves after uploads and workers)")
    upload_idle_timeout_s: float = Field(10.0, gt=0, description="an upload that sends nothing for this long gets 408")
    upload_min_kbps: float = Field(32.0, ge=0, description="after the idle timeout, an upload averaging less "
                                                           "than this many KB/s gets 408")
    header_timeout_s: float = Field(10.0, gt=0, description="a connection that has not sent a whole request's "
                                                            "headers within this is closed")
    drain_timeout_s: float = Field(30.0, ge=0, description="on SIGTERM, how long requests in progress may take "
                                                           "to finish")
    allowed_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Host header values served (comma-separated; * for any); default: "
                                          "localhost names when listening on loopback, else any",
        json_schema_extra=TEXT)
    examples_dir: Path | None = Field(None, description="a folder of example videos the page offers to try "
                                                        "(the demo's held-out clips)",
                                      json_schema_extra={"flags": ["--examples"]})
    data_dir: Path | None = Field(None, description="a folder for teaching: example clips, jobs and taught models "
                                  "are kept there (teaching is off without it)")
    teach_base: Path | None = Field(None, description="the model whose encoder teaching reuses (default: the "
                                    "served model; a frozen ImageNet one suits best)")
    teach_note: str | None = Field(None, description="a note the Teach mode shows (why teaching is limited here)",
                                   json_schema_extra=NOT_AN_OPTION)
    teach_max_actions: int = Field(20, ge=2, le=50, description="actions a server holds example clips of")
    teach_max_clips: int = Field(20, ge=1, le=50, description="example clips an action")
    teach_max_clip_mb: float = Field(50.0, gt=0, description="larger example clips get 413")
    max_regions: int = Field(16, ge=0, le=16, description="regions a prediction may ask for (`regions` of POST "
                             "/v1/predictions: each costs about one more clip's encoding); 0: none")
    max_live: int = Field(4, ge=0, description="live camera streams (WebSocket /v1/live) at once")
    live_idle_timeout_s: float = Field(30.0, gt=0, description="a live stream with no frame for this long is closed")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="comma-separated origins allowed to call the API from a browser",
        json_schema_extra=TEXT)
    api_key: SecretStr | None = Field(None, description="when set, prediction routes and /metrics need it",
                                   json_schema_extra=NOT_AN_OPTION)  # a flag would show it in `ps`
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="where the model runs: cuda needs "
                                                   "onnxruntime-gpu; auto takes a GPU when it is there")
    precision: Literal["auto", "fp32", "int8"] = Field("auto", description="auto: the model's int8 copy (MODEL.int8."
                                                       "onnx, kept by export) where this CPU has VNNI or AMX; fp32: "
                                                       "the model as given; int8: the copy")
    batching: bool | None = Field(None, description="encode the frames of concurrent requests together; default: "
                                                   "on a GPU only (on 2 CPU cores it cost 10-20% of throughput)")
    batch_window_ms: float = Field(0.0, ge=0, le=1000, description="with batching, how long a batch waits for "
                                                                   "more requests (0: takes what is waiting)")
    batch_max_frames: int = Field(64, ge=1, description="with batching, most frames encoded at once")

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("api_key", mode="before")
    @classmethod
    def _no_empty_key(cls, value: Any) -> Any:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if isinstance(text, str) and not text.strip():
            raise ValueError("the API key is set but empty: set a key, or unset ACTIONREC_API_KEY to serve "
                             "without one")
        return value

    @property
    def hosts(self) -> list[str]:
        """Host header values to serve: what `allowed_hosts` says, or, unset, the localhost names
        when listening on loopback (so a web page elsewhere cannot reach the API by DNS rebinding)."""
        if self.allowed_hosts:
            return self.allowed_hosts
        if self.host in ("127.0.0.1", "localhost", "::1"):
            return ["127.0.0.1", "localhost", "[::1]", "::1"]
        return ["*"]

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def api_key_bytes(self) -> bytes | None:
        return self.api_key.get_secret_value().encode() if self.api_key else None

    def describe(self) -> str:
        """One line for the start-up log; never shows the API key itself."""
        batching = {True: "on", False: "off", None: "on a GPU only"}[self.batching]
        if self.batching is not False:
            batching += f" (window {self.batch_window_ms:g} ms, up to {self.batch_max_frames} frames)"
        return (f"upload limit {megabytes(self.max_upload_bytes)}, duration limit {self.max_duration_s:g} s, "
                f"decode timeout {self.decode_timeout_s:g} s, {self.workers} decode workers, "
                f"{self.max_pending} requests at once, batching "
                f"{batching}, device {self.device}, "
                f"API key {'required' if self.api_key else 'not required'}, "
                f"CORS origins: {', '.join(self.cors_origins) or 'none'}")


def load_settings(**given: Any) -> ServerSettings:
    """Settings from `given` (flags), then ACTIONREC_* variables, then defaults; ValueError with
    one readable line per problem, naming the flag and the variable."""
    try:
        return ServerSettings(**{name: value for name, value in given.items() if value is not None})
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            flag = "MODEL" if name == "model_path" else "--" + name.replace("_", "-")
            variable = ENV_PREFIX + ("MODEL" if name == "model_path" else name.upper())
            problems.append(f"{flag} ({variable}): {error['msg']}, got {error.get('input')!r}")
        raise ValueError("; ".join(problems)) from None


def megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"
