"""The notification targets' config keys as an operator writes them in the receiver's TOML file:
absurd values refused, each at its key."""

from __future__ import annotations

from pathlib import Path

import pytest
from notify_kit import ENV

from commune.config import load_receiver_config
from core.errors import ConfigError

HEAD = """
[receiver]
commune = "phuong-1"

[escalation]
steps = [{ name = "to-truong", after_s = 60, notify = ["hook", "zalo-to"] }]

[notify.zalo-to]
type = "zalo"
app_id = "1234567890"
secret_env = "TUQUAN_ZALO_SECRET"
recipients = ["8417562390131"]
"""


def load(tmp_path: Path, webhook_lines: str, zalo_lines: str = ""):
    path = tmp_path / "receiver.toml"
    path.write_text(
        HEAD
        + zalo_lines
        + '\n[notify.hook]\ntype = "webhook"\nurl = "https://alerts.example/tuquan"\n'
        + 'secret_env = "TUQUAN_WEBHOOK_SECRET"\n'
        + webhook_lines,
        encoding="utf-8",
    )
    return load_receiver_config(path, env=ENV)


def test_retries_wait_at_most_five_minutes_unless_told_otherwise(tmp_path: Path) -> None:
    config = load(tmp_path, "")
    assert config.notify["hook"].retry_max_s == 300
    assert config.notify["zalo-to"].retry_max_s == 300
    config = load(tmp_path, "retry_max_s = 30\n", "retry_max_s = 0.5\n")
    assert config.notify["hook"].retry_max_s == 30
    assert config.notify["zalo-to"].retry_max_s == 0.5


@pytest.mark.parametrize(
    "value", ["nan", "inf", "-inf", "1e30", "0", "-1", "0.01", '"300"', "true", "[300]"]
)
def test_an_absurd_retry_cap_is_refused_at_its_key(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, f"retry_max_s = {value}\n", f"retry_max_s = {value}\n")
    paths = {path.removesuffix(".int").removesuffix(".float") for path, _ in caught.value.errors}
    assert paths == {"notify.zalo-to.zalo.retry_max_s", "notify.hook.webhook.retry_max_s"}


@pytest.mark.parametrize("key", ["timeout_s", "after_s"])
def test_absurd_timeouts_and_step_delays_are_refused_at_their_key(tmp_path: Path, key: str) -> None:
    path = tmp_path / "receiver.toml"
    text = HEAD + '\n[notify.hook]\ntype = "webhook"\nurl = "https://a.example/"\n'
    text += 'secret_env = "TUQUAN_WEBHOOK_SECRET"\n'
    if key == "timeout_s":
        text += "timeout_s = 1e30\n"
    else:
        text = text.replace("after_s = 60", "after_s = nan")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(path, env=ENV)
    [(where, message)] = caught.value.errors
    assert where.endswith(key) and ("nan" in message or "1e+30" in message)


def test_the_console_url_the_notifications_link_must_be_a_web_address(tmp_path: Path) -> None:
    path = tmp_path / "receiver.toml"
    text = HEAD.replace("[escalation]\n", '[escalation]\nconsole_url = "https://c.example"\n')
    text += '\n[notify.hook]\ntype = "webhook"\nurl = "https://a.example/"\n'
    text += 'secret_env = "TUQUAN_WEBHOOK_SECRET"\n'
    path.write_text(text, encoding="utf-8")
    assert load_receiver_config(path, env=ENV).escalation.console_url == "https://c.example"
    path.write_text(text.replace("https://c.example", "javascript:alert(1)"), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_receiver_config(path, env=ENV)
    assert [where for where, _ in caught.value.errors] == ["escalation.console_url"]
