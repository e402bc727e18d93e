"""A JSON system's reply codes (hub.transport.replycodes) and its login session
(hub.transport.session): pure logic, the system's replies given as values."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from hub.errors import ConfigError, InvalidMessage, RetryableError
from hub.transport import Reply
from hub.transport.replycodes import ReplyCodes
from hub.transport.session import Session

FILE = {"unknown": "permanent", "codes": {
    "0": {"kind": "ok", "message": "Thành công"},
    "-1": {"kind": "retryable", "message": "Lỗi hệ thống"},
    "-2": {"kind": "session_expired"},
}}


def codes(doc: dict[str, Any] = FILE) -> ReplyCodes:
    return ReplyCodes.parse(doc, "errors.toml", system="sys", title="the system",
                            code_key="error_code", message_key="message",
                            kinds=frozenset({"session_expired"}))


def test_codes_compare_as_integers_and_an_unlisted_one_is_of_the_unknown_kind() -> None:
    table = codes()
    assert [table.code_of({"error_code": v}) for v in (0, "0", "00", " 0 ")] == ["0"] * 4
    assert table.code_of({"error_code": True}) is None
    assert table.code_of({"error_code": "x"}) is None and table.code_of({}) is None
    assert table.rule({"error_code": "-2"}).kind == "session_expired"
    unlisted = table.rule({"error_code": 7})
    assert unlisted.kind == "permanent" and "not listed" in unlisted.message
    assert "Lỗi hệ thống" in table.describe({"error_code": -1}, table.rule({"error_code": -1}),
                                            "login")


def test_reading_a_reply_retries_a_retryable_code_and_refuses_one_without_a_code() -> None:
    read = codes().reader("DongBoHoSoMC")
    assert read(Reply(200, {"error_code": "0"})) == {"error_code": "0"}
    with pytest.raises(RetryableError) as retry:
        read(Reply(200, {"error_code": "-1", "message": "quá tải"}))
    assert retry.value.code == "system.unavailable" and "quá tải" in retry.value.message
    with pytest.raises(InvalidMessage) as bad:
        read(Reply(200, {"result": []}))
    assert bad.value.code == "system.bad_reply"


@pytest.mark.parametrize("doc, field", [
    ({"unknown": "ignore", "codes": FILE["codes"]}, "errors.toml unknown"),
    ({"codes": {"0": {"kind": "fine"}}}, 'errors.toml [codes."0"].kind'),
    ({"codes": {"1": {"kind": "permanent"}}}, "errors.toml"),
])
def test_a_broken_file_is_refused_naming_the_key(doc: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        codes(doc)
    assert err.value.field == field


def test_concurrent_calls_share_one_login_and_a_refused_token_is_forgotten() -> None:
    issued: list[str] = []

    async def go() -> tuple[list[str | None], str, str]:
        gate = asyncio.Event()

        async def login() -> str:
            await gate.wait()  # held until every call below is waiting for a token
            issued.append(f"token-{len(issued) + 1}")
            return issued[-1]

        async def open_gate() -> None:
            gate.set()

        session = Session(login)
        # gather starts the five calls in order before open_gate: all of them wait.
        first = await asyncio.gather(*(session.token() for _ in range(5)), open_gate())
        session.forget("token-0")  # not the current one: kept
        kept = await session.token()
        session.forget(kept)
        return list(first[:5]), kept, await session.token()

    first, kept, fresh = asyncio.run(go())
    assert first == ["token-1"] * 5 and kept == "token-1" and fresh == "token-2"
    assert issued == ["token-1", "token-2"]
