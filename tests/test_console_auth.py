"""Who may use the console: logging in and out, wrong passwords slowed and then locked (each
audited), the session cookie's flags, the viewer who may not act, CSRF, API tokens. Against
the real app on a real uvicorn server, over the real SQLite store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from console_kit import (
    PASSWORD,
    STORES,
    Browser,
    LiveConsole,
    LocalDesk,
    live_console,
    location_path,
    make_users,
    store_param,
)

from console.login import login_delay


@pytest.fixture(params=STORES)
def console(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[LiveConsole, LocalDesk]]:
    store = store_param(request)
    with live_console(tmp_path, store, lockout_after=3, lockout_minutes=10) as (live, desk):
        make_users(live.accounts)
        yield live, desk


@pytest.fixture
def browser(console: tuple[LiveConsole, LocalDesk]) -> Iterator[Browser]:
    client = console[0].client()
    yield client
    client.close()


def test_a_page_sends_whoever_is_not_logged_in_to_the_login_page(browser: Browser) -> None:
    response = browser.get("/hubs")
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2Fhubs"
    page = browser.get("/login?next=%2Fhubs")
    assert page.status_code == 200
    assert 'id="login-form"' in page.text


def test_login_opens_a_session_and_logout_ends_it(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    response = browser.login("op1")
    assert response.status_code == 303 and location_path(response) == "/"
    queue = browser.get("/")
    assert queue.status_code == 200
    assert 'id="whoami"' in queue.text and "op1" in queue.text
    session_cookie = browser.cookies["tuquan_session"]

    token = browser.csrf("/")
    out = browser.post("/logout", data={"csrf_token": token})
    assert out.status_code == 303 and location_path(out) == "/login"
    assert "tuquan_session" not in browser.cookies
    # The old cookie is worth nothing now, even replayed.
    replayed = browser.get("/", headers={"cookie": f"tuquan_session={session_cookie}"})
    assert replayed.status_code == 303 and location_path(replayed) == "/login"
    actions = [(r.actor, r.action) for r in reversed(desk.audit.recent(10))]
    assert actions == [("op1", "login"), ("op1", "logout")]


def test_the_session_cookie_is_secure_httponly_and_samesite_strict(browser: Browser) -> None:
    browser.login("viewer1")
    header = next(h for h in browser.set_cookie_headers if h.startswith("tuquan_session="))
    flags = {part.strip().lower() for part in header.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
    assert any(f.startswith("max-age=") for f in flags)
    token_value = header.split(";", 1)[0].split("=", 1)[1]
    assert len(token_value) >= 40  # 256 random bits


def test_the_store_keeps_only_a_hash_of_the_session_token(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    browser.login("op1")
    token = browser.cookies["tuquan_session"]
    rows = desk.db.read("SELECT token_hash FROM console_sessions")
    assert len(rows) == 1 and token not in rows[0][0]
    assert (
        desk.db.read_one("SELECT count(*) FROM console_sessions WHERE token_hash = ?", (token,))[0]
        == 0
    )


def test_wrong_passwords_slow_down_then_lock_the_account_each_audited(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    for _ in range(2):
        response = browser.login("op1", "wrong")
        assert response.status_code == 401
        assert 'id="login-error"' in response.text
    locking = browser.login("op1", "wrong again")
    assert locking.status_code == 429
    # Locked: even the right password is refused, and that too is recorded.
    assert browser.login("op1", PASSWORD).status_code == 429
    assert "tuquan_session" not in browser.cookies

    records = list(reversed(desk.audit.recent(20)))
    failed = [r for r in records if r.action == "login_failed"]
    assert [r.detail["failures"] for r in failed] == [1, 2, 3]
    delays = [r.detail["delay_s"] for r in failed]
    assert delays == [login_delay(1), login_delay(2), login_delay(3)]
    assert delays[0] < delays[1] < delays[2]
    assert all(r.actor == "op1" for r in failed)
    locked = [r for r in records if r.action == "account_locked"]
    assert len(locked) == 1 and locked[0].detail["until"] > failed[-1].at
    refused = [r for r in records if r.action == "login_refused"]
    assert len(refused) == 1 and refused[0].detail["reason"] == "locked"
    user = live.accounts.get_user("op1")
    assert user is not None and user.locked_until == locked[0].detail["until"]

    # An administrator unlocks it; the right password works again.
    live.accounts.unlock("op1")
    assert browser.login("op1", PASSWORD).status_code == 303


def test_the_delay_grows_with_the_failures_and_is_capped() -> None:
    delays = [login_delay(n) for n in range(0, 40)]
    assert delays[0] == 0
    assert all(a < b for a, b in zip(delays[1:6], delays[2:7], strict=False))
    assert max(delays) == delays[-1] <= 5.0


def test_an_unknown_user_is_refused_like_a_wrong_password_and_audited(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    response = browser.login("nobody", "whatever")
    assert response.status_code == 401
    record = desk.audit.recent(1)[0]
    assert (record.actor, record.action, record.detail["known"]) == (
        "nobody",
        "login_failed",
        False,
    )


def test_a_success_resets_the_count_of_wrong_passwords(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, _ = console
    browser.login("op1", "wrong")
    browser.login("op1", "wrong")
    assert browser.login("op1").status_code == 303
    user = live.accounts.get_user("op1")
    assert user is not None and user.failed == 0 and user.locked_until is None


def test_login_after_redirects_only_within_the_site(browser: Browser) -> None:
    token = browser.csrf("/login")
    response = browser.post(
        "/login",
        data={
            "username": "op1",
            "password": PASSWORD,
            "csrf_token": token,
            "next": "//evil.example/steal",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"


def test_login_without_its_csrf_token_is_refused(browser: Browser) -> None:
    browser.get("/login")  # the login cookie is set
    response = browser.post("/login", data={"username": "op1", "password": PASSWORD})
    assert response.status_code == 403
    wrong = browser.post(
        "/login", data={"username": "op1", "password": PASSWORD, "csrf_token": "x" * 43}
    )
    assert wrong.status_code == 403
    assert "tuquan_session" not in browser.cookies


ACTIONS = [
    ("/alerts/{id}/ack", {}),
    ("/alerts/{id}/close", {"outcome": "test", "note": "n"}),
    ("/alerts/{id}/commands/silence", {}),
    ("/alerts/{id}/commands/ping", {}),
    ("/alerts/{id}/commands/snapshot", {"event_id": "e1"}),
    ("/users", {"name": "x", "role": "admin", "password": "p"}),
    ("/users/op1/remove", {}),
    ("/users/op1/unlock", {}),
]


@pytest.mark.parametrize(("path", "form"), ACTIONS)
def test_a_viewer_cannot_act(
    console: tuple[LiveConsole, LocalDesk], browser: Browser, path: str, form: dict[str, str]
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    browser.login("viewer1")
    token = browser.csrf("/")
    response = browser.post(path.format(id=alert.id), data={**form, "csrf_token": token})
    assert response.status_code == 403
    after = desk.alerts.get(alert.id)
    assert after is not None and after.state == "new"
    assert desk.commands_sent == []
    assert live.accounts.get_user("op1") is not None
    assert live.accounts.get_user("x") is None


API_ACTIONS = [
    ("/api/v1/alerts/{id}/ack", None),
    ("/api/v1/alerts/{id}/close", {"outcome": "test"}),
    ("/api/v1/hubs/cho-1/commands/silence", None),
    ("/api/v1/hubs/cho-1/commands/ping", None),
    ("/api/v1/hubs/cho-1/commands/snapshot", {"id": "e1"}),
]


@pytest.mark.parametrize(("path", "body"), API_ACTIONS)
def test_a_viewer_token_cannot_act_through_the_api(
    console: tuple[LiveConsole, LocalDesk], browser: Browser, path: str, body: object
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    token = live.accounts.add_token("province-viewer", "viewer")
    response = browser.post(
        path.format(id=alert.id), json=body, headers={"authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert "viewer" in response.json()["detail"]
    after = desk.alerts.get(alert.id)
    assert after is not None and after.state == "new" and desk.commands_sent == []


def test_a_viewer_may_read_every_page(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    browser.login("viewer1")
    for path in ("/", f"/alerts/{alert.id}", "/hubs", "/history", "/history.csv"):
        assert browser.get(path).status_code == 200, path
    page = browser.get(f"/alerts/{alert.id}").text
    assert 'id="ack-button"' not in page and 'id="silence-button"' not in page
    assert browser.get("/users").status_code == 403  # the users page is the admin's


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_an_action_without_the_right_csrf_token_is_refused(
    console: tuple[LiveConsole, LocalDesk], browser: Browser, token: str
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    browser.login("op1")
    form = {"csrf_token": token} if token else {}
    for path in (f"/alerts/{alert.id}/ack", f"/alerts/{alert.id}/commands/silence"):
        assert browser.post(path, data=form).status_code == 403
    api = browser.post(f"/api/v1/alerts/{alert.id}/ack", headers={"x-csrf-token": token})
    assert api.status_code == 403
    assert "CSRF" in api.json()["detail"]
    after = desk.alerts.get(alert.id)
    assert after is not None and after.state == "new" and desk.commands_sent == []


def test_the_csrf_token_of_another_session_is_refused(
    console: tuple[LiveConsole, LocalDesk],
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    mallory, alice = live.client(), live.client()
    try:
        mallory.login("viewer1")
        stolen = mallory.csrf("/")
        alice.login("op1")
        response = alice.post(f"/alerts/{alert.id}/ack", data={"csrf_token": stolen})
        assert response.status_code == 403
        own = alice.post(f"/alerts/{alert.id}/ack", data={"csrf_token": alice.csrf("/")})
        assert own.status_code == 303
    finally:
        mallory.close()
        alice.close()


def test_an_operator_acts_with_the_form_token_or_the_header(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    first, second = desk.raise_alert("cho-1"), desk.raise_alert("truong-2")
    browser.login("op1")
    token = browser.csrf("/")
    form = browser.post(f"/alerts/{first.id}/ack", data={"csrf_token": token})
    assert form.status_code == 303
    api = browser.post(f"/api/v1/alerts/{second.id}/ack", headers={"x-csrf-token": token})
    assert api.status_code == 200 and api.json()["ack_by"] == "op1"
    acked = [desk.alerts.get(a.id) for a in (first, second)]
    assert [(a.state, a.ack_by) for a in acked if a] == [("acknowledged", "op1")] * 2


def test_api_tokens_authenticate_without_cookie_or_csrf(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    alert = desk.raise_alert()
    token = live.accounts.add_token("province", "operator")
    headers = {"authorization": f"Bearer {token}"}
    listed = browser.get("/api/v1/alerts", headers=headers)
    assert listed.status_code == 200
    assert [a["id"] for a in listed.json()["alerts"]] == [alert.id]
    closed = browser.post(
        f"/api/v1/alerts/{alert.id}/close",
        json={"outcome": "false_alarm", "note": "cat on the button"},
        headers=headers,
    )
    assert closed.status_code == 200
    assert closed.json()["closed_by"] == "token:province"
    record = desk.audit.for_alert(alert.id)[-1]
    assert (record.actor, record.action) == ("token:province", "closed")

    assert browser.get("/api/v1/alerts").status_code == 401
    bad = browser.get("/api/v1/alerts", headers={"authorization": "Bearer tqc_nope"})
    assert bad.status_code == 401
    live.accounts.remove_token("province")
    assert browser.get("/api/v1/alerts", headers=headers).status_code == 401


def test_a_bearer_header_is_not_helped_by_a_session_cookie(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    browser.login("op1")
    response = browser.get("/api/v1/alerts", headers={"authorization": "Bearer tqc_nope"})
    assert response.status_code == 401


def test_the_administrator_manages_users_on_the_users_page(
    console: tuple[LiveConsole, LocalDesk], browser: Browser
) -> None:
    live, desk = console
    assert browser.login("admin1").status_code == 303
    page = browser.get("/users", headers={"accept-language": "en"})
    assert page.status_code == 200
    assert 'data-user="op1"' in page.text and 'id="user-add-form"' in page.text
    token = browser.csrf("/users")
    added = browser.post(
        "/users",
        data={"csrf_token": token, "name": "tran.thi.b", "role": "operator", "password": "pw 1"},
    )
    assert added.status_code == 303
    bad = browser.post(
        "/users", data={"csrf_token": token, "name": "x y", "role": "operator", "password": "p"}
    )
    assert bad.status_code == 400 and "not a valid user name" in bad.text
    newcomer, guesser = live.client(), live.client()
    try:
        assert newcomer.login("tran.thi.b", "pw 1").status_code == 303
        for _ in range(3):
            guesser.login("op1", "wrong")
    finally:
        newcomer.close()
        guesser.close()
    locked = live.accounts.get_user("op1")
    assert locked is not None and locked.locked_until is not None
    assert 'class="unlock-button"' in browser.get("/users").text
    assert browser.post("/users/op1/unlock", data={"csrf_token": token}).status_code == 303
    unlocked = live.accounts.get_user("op1")
    assert unlocked is not None and unlocked.locked_until is None
    assert browser.post("/users/tran.thi.b/remove", data={"csrf_token": token}).status_code == 303
    assert live.accounts.get_user("tran.thi.b") is None
    assert browser.post("/users/admin1/remove", data={"csrf_token": token}).status_code == 400
    audited = [(r.actor, r.action) for r in reversed(desk.audit.recent(30))]
    assert ("admin1", "user_added") in audited
    assert ("admin1", "user_unlocked") in audited
    assert ("admin1", "user_removed") in audited
    # An operator may not manage users.
    operator = live.client()
    try:
        operator.login("op1")
        assert operator.get("/users").status_code == 403
    finally:
        operator.close()


def test_the_login_page_sends_a_logged_in_user_on(browser: Browser) -> None:
    browser.login("op1")
    response = browser.get("/login?next=%2Fhubs")
    assert response.status_code == 303 and response.headers["location"] == "/hubs"
