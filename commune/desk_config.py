"""The receiver config's tables for the police console: the hubs the commune expects, how they
are supervised, the escalation ladder, where notifications go, and the web console itself.

```toml
[[hubs]]                          # every hub the commune expects (any number)
id = "cho-an-dong-gate-1"
name = "Chợ An Đông, cổng 1"
place = "34 An Dương Vương"
latitude = 10.7570
longitude = 106.6730
contact = "Tổ trưởng Nguyễn Văn A, 0901 234 567"
supervision_s = 90                # optional: this hub's silence window

[supervision]
health_interval_s = 30            # the hubs' uplink.health_interval_s
window_s = 75                     # silent longer than this: communication trouble (default
                                  # 2 x health_interval_s + 15)
alarm_backlog_min = 5             # undelivered alarms reported for longer: an alert
clock_unsynced_h = 24             # a clock unsynchronised for longer: an alert

[escalation]                      # an alert still "new" after each step's after_s
alerts = ["alarm", "trouble"]     # which alerts escalate (also "detection")
steps = [
  { name = "to-truong", after_s = 60, notify = ["zalo-to"] },
  { name = "truc-ban", after_s = 180, notify = ["webhook-cong-an"] },
]

[notify.webhook-cong-an]          # a JSON POST signed with HMAC-SHA256
type = "webhook"
url = "https://alerts.example/tuquan"
secret_env = "TUQUAN_WEBHOOK_SECRET"   # or secret_file = "webhook.secret"

[notify.zalo-to]                  # a Zalo Official Account's customer-service message
type = "zalo"
app_id = "1234567890"
secret_env = "TUQUAN_ZALO_SECRET"      # the app's secret key (or secret_file)
refresh_token_env = "TUQUAN_ZALO_REFRESH_TOKEN"  # the first one (or refresh_token_file)
recipients = ["8417562390131"]    # user ids of followers of the OA

[console]
listen = "127.0.0.1:8080"
language = "vi"                   # when the browser asks for no language we speak
```

Secrets are never in the file: ``secret_env``/``refresh_token_env`` name an environment variable,
``secret_file``/``refresh_token_file`` a file whose whole content (trimmed) is the secret.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from settings import Frozen
from settings.base import load_context
from settings.validators import Id, existing_file

Seconds = Annotated[StrictInt | StrictFloat, Field(gt=0, le=7 * 24 * 3600)]
# The longest wait between two attempts at a notification (the backoff starts at 1 s and
# doubles up to it): at least 0.1 s, so a dead endpoint is never hammered, at most a day.
RetryMax = Annotated[StrictInt | StrictFloat, Field(ge=0.1, le=24 * 3600)]
Text = Annotated[StrictStr, Field(max_length=200)]
ALERT_CLASSES = ("alarm", "trouble", "detection")
_TARGET_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_LISTEN = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[^:\s]+):(?P<port>\d{1,5})")


def _finite(value: float | None) -> float | None:
    if value is not None and not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


Latitude = Annotated[StrictInt | StrictFloat, Field(ge=-90, le=90), AfterValidator(_finite)]
Longitude = Annotated[StrictInt | StrictFloat, Field(ge=-180, le=180), AfterValidator(_finite)]


class ExpectedHubConfig(Frozen):
    """One ``[[hubs]]`` entry: a hub the commune expects to hear from."""

    id: Id
    name: Text = ""
    place: Text = ""
    latitude: Latitude | None = None
    longitude: Longitude | None = None
    contact: Text = ""
    supervision_s: Seconds | None = None

    @model_validator(mode="after")
    def _both_coordinates(self) -> ExpectedHubConfig:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("latitude and longitude go together: set both or neither")
        return self


class SupervisionConfig(Frozen):
    """``[supervision]``: when a hub counts as gone dark, and the other hub troubles."""

    health_interval_s: Seconds = 30
    window_s: Seconds | None = None
    alarm_backlog_min: Annotated[StrictInt | StrictFloat, Field(gt=0, le=24 * 60)] = 5
    clock_unsynced_h: Annotated[StrictInt | StrictFloat, Field(gt=0, le=24 * 365)] = 24

    @property
    def default_window_s(self) -> float:
        """A little over two health intervals: one lost health message is not an alert."""
        if self.window_s is not None:
            return float(self.window_s)
        return 2 * float(self.health_interval_s) + 15


def target_name(value: str) -> str:
    if not _TARGET_NAME.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid notification target name: use 1 to 63 lower-case "
            "letters, digits, '-' or '_', starting with a letter or digit"
        )
    return value


TargetName = Annotated[StrictStr, AfterValidator(target_name)]


class EscalationStep(Frozen):
    """One rung of the ladder: who is told once an alert has been new for ``after_s``."""

    name: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    after_s: Seconds
    notify: Annotated[tuple[TargetName, ...], Field(min_length=1)]


class EscalationConfig(Frozen):
    """``[escalation]``: the ladder, its steps in rising ``after_s``."""

    alerts: tuple[Literal["alarm", "trouble", "detection"], ...] = ("alarm", "trouble")
    steps: tuple[EscalationStep, ...] = ()
    # The console's address as the people told can open it: each notification links the alert
    # (``<console_url>/alerts/<id>``). None: no link.
    console_url: HttpUrl | None = None

    @field_validator("steps")
    @classmethod
    def _rising(cls, steps: tuple[EscalationStep, ...]) -> tuple[EscalationStep, ...]:
        for before, after in zip(steps, steps[1:], strict=False):
            if after.after_s <= before.after_s:
                raise ValueError(
                    f"step {after.name!r} (after_s = {after.after_s:g}) must come later than "
                    f"step {before.name!r} (after_s = {before.after_s:g}): list the steps in "
                    "rising after_s"
                )
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError("each step needs a name of its own")
        return steps


def _secret(
    env_name: str | None, file: Path | None, info: ValidationInfo, what: str
) -> SecretStr | None:
    """The secret from the environment variable named ``env_name``, else from ``file``."""
    if env_name is not None:
        value = load_context(info).env.get(env_name)
        if not value:
            raise ValueError(f"the environment variable {env_name} (the {what}) is not set")
        return SecretStr(value)
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ValueError(f"cannot read the {what} from {file}: {exc}") from None
        if not text:
            raise ValueError(f"{file} is empty: it must hold the {what}")
        return SecretStr(text)
    return None


EnvName = Annotated[StrictStr, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
SecretFile = Annotated[Path, AfterValidator(existing_file)]
HttpUrl = Annotated[StrictStr, Field(pattern=r"^https?://[^\s/$.?#][^\s]*$", max_length=2000)]


class WebhookTarget(Frozen):
    """``[notify.<name>]`` with ``type = "webhook"``: a JSON POST, HMAC-SHA256 signed."""

    type: Literal["webhook"]
    url: HttpUrl
    secret_env: EnvName | None = None
    secret_file: SecretFile | None = None
    timeout_s: Annotated[StrictInt | StrictFloat, Field(gt=0, le=120)] = 10
    retry_max_s: RetryMax = 300
    secret: SecretStr | None = Field(default=None, validate_default=True, repr=False)

    @field_validator("secret", mode="before")
    @classmethod
    def _read_secret(cls, value: object, info: ValidationInfo) -> SecretStr:
        if value is not None:
            raise ValueError(
                "a secret is not allowed in the config file: use secret_env or secret_file"
            )
        secret = _secret(
            info.data.get("secret_env"), info.data.get("secret_file"), info, "webhook secret"
        )
        if secret is None:
            raise ValueError("a webhook needs its HMAC secret: set secret_env or secret_file")
        return secret


class ZaloTarget(Frozen):
    """``[notify.<name>]`` with ``type = "zalo"``: a Zalo OA customer-service message."""

    type: Literal["zalo"]
    app_id: Annotated[StrictStr, Field(min_length=1, max_length=64)]
    recipients: Annotated[
        tuple[Annotated[StrictStr, Field(min_length=1, max_length=64)], ...], Field(min_length=1)
    ]
    secret_env: EnvName | None = None
    secret_file: SecretFile | None = None
    refresh_token_env: EnvName | None = None
    refresh_token_file: SecretFile | None = None
    api_base: HttpUrl = "https://openapi.zalo.me"
    oauth_base: HttpUrl = "https://oauth.zaloapp.com"
    timeout_s: Annotated[StrictInt | StrictFloat, Field(gt=0, le=120)] = 10
    retry_max_s: RetryMax = 300
    secret: SecretStr | None = Field(default=None, validate_default=True, repr=False)
    refresh_token: SecretStr | None = Field(default=None, validate_default=True, repr=False)

    @field_validator("secret", mode="before")
    @classmethod
    def _read_secret(cls, value: object, info: ValidationInfo) -> SecretStr:
        if value is not None:
            raise ValueError(
                "a secret is not allowed in the config file: use secret_env or secret_file"
            )
        secret = _secret(
            info.data.get("secret_env"), info.data.get("secret_file"), info, "app secret key"
        )
        if secret is None:
            raise ValueError("the Zalo app's secret key is needed: set secret_env or secret_file")
        return secret

    @field_validator("refresh_token", mode="before")
    @classmethod
    def _read_refresh_token(cls, value: object, info: ValidationInfo) -> SecretStr | None:
        if value is not None:
            raise ValueError(
                "a token is not allowed in the config file: use refresh_token_env "
                "or refresh_token_file"
            )
        return _secret(
            info.data.get("refresh_token_env"),
            info.data.get("refresh_token_file"),
            info,
            "refresh token",
        )


NotifyTarget = Annotated[WebhookTarget | ZaloTarget, Field(discriminator="type")]


def listen_address(value: str) -> str:
    """``HOST:PORT`` (an IPv6 host in brackets)."""
    match = _LISTEN.fullmatch(value)
    if match is None or not 0 < int(match["port"]) < 65536:
        raise ValueError(f"{value!r} is not HOST:PORT (for example 127.0.0.1:8080)")
    return value


def split_listen(value: str) -> tuple[str, int]:
    match = _LISTEN.fullmatch(value)
    assert match is not None  # validated
    return match["host"].strip("[]"), int(match["port"])


class ConsoleConfig(Frozen):
    """``[console]``: the web console."""

    listen: Annotated[StrictStr, AfterValidator(listen_address)] = "127.0.0.1:8080"
    language: Literal["vi", "en"] = "vi"
    session_hours: Annotated[StrictInt | StrictFloat, Field(gt=0, le=24 * 30)] = 12
    lockout_after: Annotated[StrictInt, Field(ge=1, le=100)] = 5
    lockout_minutes: Annotated[StrictInt | StrictFloat, Field(gt=0, le=24 * 60)] = 15


__all__ = [
    "ALERT_CLASSES",
    "ConsoleConfig",
    "EscalationConfig",
    "EscalationStep",
    "ExpectedHubConfig",
    "NotifyTarget",
    "SupervisionConfig",
    "WebhookTarget",
    "ZaloTarget",
    "split_listen",
]
