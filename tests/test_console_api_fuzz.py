"""Schemathesis over every operation of ``/api/v1`` against the live console, as an operator
with an API token: no response is a 5xx, and every response matches the OpenAPI document
(status codes, content types, bodies), for valid and invalid input alike.

The cases come from ``console.app.openapi_document()`` (the test checks the server serves
exactly that document), so the schema is there when pytest collects the module. Bounded so it
stays quick: 30 examples per operation, derandomized (the same cases each run). The store holds
a few alerts, a hub heard and a command answered, so that the ids the fuzzer picks hit real
rows as well as missing ones.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from console_kit import LiveConsole, LocalDesk, live_console
from hypothesis import HealthCheck, settings

from console.accounts import TOKEN_PREFIX, digest
from console.app import openapi_document
from core.events import utc_now_iso

MAX_EXAMPLES = 30

schema = schemathesis.openapi.from_dict(openapi_document())
# The operator token, chosen before the console runs (cases are made while pytest collects);
# the console's accounts get its hash, as `tuquan console token add` would store it.
TOKEN = TOKEN_PREFIX + secrets.token_urlsafe(32)


@schema.auth(refresh_interval=None)
class OperatorToken:
    """The bearer token, set on each case the way the document's security scheme says (so
    schemathesis knows which cases it sends without one)."""

    def get(self, case: schemathesis.Case, ctx: object) -> str:
        return TOKEN

    def set(self, case: schemathesis.Case, data: str, ctx: object) -> None:
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {data}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LiveConsole, str]]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    with live_console(tmp) as (console, desk):
        seed(desk)
        with desk.db.tx() as conn:
            conn.execute(
                "INSERT INTO console_tokens (name, role, token_hash, created_at) "
                "VALUES ('fuzzer', 'operator', ?, ?)",
                (digest(TOKEN), utc_now_iso()),
            )
        assert console.accounts.token(TOKEN) is not None
        yield console, TOKEN


def seed(desk: LocalDesk) -> None:
    for hub, kind, zone in (
        ("cho-1", "panic", "panic-1"),
        ("truong-2", "tamper", "tamper-1"),
        ("cho-1", "person", "cam-1"),
        ("hub-3", "fire", "smoke-1"),
    ):
        desk.raise_alert(hub, kind, zone)
    desk.hubs.record_status("cho-1", "online")
    desk.hubs.record_health("cho-1", {"buses": {"b": {"nodes": {"n": {"battery_mv": 2900}}}}}, True)
    record = desk.send_command("cho-1", "silence", {}, "op1", 1)
    desk.answer(record.id, {"ok": True, "silenced": ["siren"]})


def test_the_server_serves_the_fuzzed_document(live: tuple[LiveConsole, str]) -> None:
    console, _ = live
    served = httpx.get(f"{console.url}/api/v1/openapi.json", timeout=30).json()
    assert served == openapi_document()


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_api(case: schemathesis.Case, live: tuple[LiveConsole, str]) -> None:
    console, _ = live
    case.call_and_validate(base_url=console.url, timeout=30)
