"""The one JSON body parser of the entry points: what json.loads lets through and the hub must
not (deep nesting, lone surrogates, numbers nothing can carry, text that is not UTF-8) is
refused with a stable code, and an ordinary body costs no more than it did."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from test_api_hostile import POSTAL_TOKEN, ROUTES, SECRET, Route, _post
from test_api_requests import requests_registry
from test_api_support import (  # noqa: F401 - fixtures
    Hub,
    keys_fixture,
    make_hub_fixture,
    new_code,
)

from hub import jsonbody
from hub.envelope import Envelope
from hub.errors import ClientError, InvalidMessage, ValidationError
from hub.jsonbody import MAX_DEPTH, BadJson, parse_json, parse_object
from hub.settings import Settings
from hub.transport import HttpTransport, Request

DOSSIER: dict[str, Any] = {
    "code": "000.00.00.H56-250101-0001",
    "procedure_code": "2.002492",
    "procedure_name": "Cấp giấy phép xây dựng",
    "agency_code": "000.00.00.H56",
    "applicant": {"identity_number": "001099012345", "name": "Nguyễn Văn A"},
    "channel": 2,
    "submitted_at": "2025-01-01T08:00:00+07:00",
    "attachments": [{"id": "tp1", "name": "đơn.pdf", "url": "https://files.example/1",
                     "size": 1024, "sha256": "ab" * 32}],
    "fees": [{"code": "LP01", "name": "Lệ phí", "amount": 75000.5}],
}


def refused(body: bytes, code: str, **kw: Any) -> BadJson:
    with pytest.raises(BadJson) as info:
        parse_json(body, **kw)
    assert info.value.code == code, info.value
    assert info.value.http_status == 400
    # The refusal travels as JSON and in logs: it must itself be valid UTF-8 text.
    json.dumps(info.value.to_dict(), ensure_ascii=False).encode()
    return info.value


def nested(depth: int, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_an_ordinary_body_is_what_json_loads_makes_of_it() -> None:
    for body in (json.dumps(DOSSIER, ensure_ascii=False).encode(),
                 json.dumps(DOSSIER).encode()):  # every non-ASCII letter as an escape
        assert parse_object(body) == json.loads(body) == DOSSIER


def test_the_refusals_are_client_errors_and_invalid_messages() -> None:
    error = refused(b"{", "client.unparseable")
    # A callback's caller sees a ClientError (400); a consumer would park it as invalid.
    assert isinstance(error, ClientError) and isinstance(error, InvalidMessage)
    assert error.field == "body"
    assert "line 1 column 2" in error.message


def test_the_default_depth_is_the_settings_default() -> None:
    assert Settings().max_json_depth == MAX_DEPTH


# -- depth -----------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["array", "object"])
def test_nesting_up_to_the_limit_is_taken_deeper_is_refused(kind: str) -> None:
    assert parse_json(nested(MAX_DEPTH, kind)) is not None
    error = refused(nested(MAX_DEPTH + 1, kind), "client.too_deep")
    assert str(MAX_DEPTH) in error.message and error.field == "body"
    assert parse_json(nested(5, kind), max_depth=5) is not None
    refused(nested(6, kind), "client.too_deep", max_depth=5)


@pytest.mark.parametrize("depth", [900, 2_000, 200_000])
def test_nesting_that_exhausts_the_recursion_is_too_deep(depth: int) -> None:
    # 2,000 levels are 4 KB: json.loads alone raises RecursionError on them.
    refused(nested(depth), "client.too_deep")
    refused(nested(depth, "object"), "client.too_deep")


def test_a_deep_member_of_an_ordinary_body_is_refused() -> None:
    body = json.dumps(DOSSIER).encode()[:-1] + b', "x": ' + nested(40) + b"}"
    refused(body, "client.too_deep")


def test_a_wide_body_with_many_brackets_is_taken() -> None:
    wide = {**DOSSIER, "attachments": DOSSIER["attachments"] * 500, "x": [[[[[]]]]]}
    assert parse_object(json.dumps(wide).encode()) == wide


def test_brackets_inside_strings_do_not_nest() -> None:
    text = {"note": "[" * 100 + "{" * 100, "other": "]" * 50}
    assert parse_object(json.dumps(text).encode()) == text


def test_mixed_nesting_counts_every_container() -> None:
    body = b'{"a": [{"b": [{"c": [1]}]}]}'  # 6 containers
    assert parse_json(body, max_depth=6)
    refused(body, "client.too_deep", max_depth=5)


def test_an_ordinary_body_is_not_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path: a dossier has fewer brackets than the limit and no surrogate escape, so
    neither walk of the parsed value runs (their cost is only paid by unusual bodies)."""
    def fail(*args: Any) -> None:
        raise AssertionError("walked an ordinary body")

    monkeypatch.setattr(jsonbody, "_deeper_than", fail)
    monkeypatch.setattr(jsonbody, "_check_text", fail)
    monkeypatch.setattr(jsonbody, "_find_duplicate", fail)
    parse_object(json.dumps(DOSSIER, ensure_ascii=False).encode())
    parse_object(json.dumps(DOSSIER).encode())  # escapes, none in the surrogate range


# -- lone surrogates -------------------------------------------------------------------------

@pytest.mark.parametrize("escape", ["\\ud800", "\\udfff", "\\uDBFF", "\\uDc00", "\\ud83dx",
                                    "x\\ude00", "\\ude00\\ud83d", "\\ud83d\\ud83d"])
def test_a_lone_surrogate_is_refused_naming_the_field(escape: str) -> None:
    body = (b'{"applicant": {"identity_number": "001099012345", "name": "A' + escape.encode()
            + b'"}}')
    error = refused(body, "client.lone_surrogate")
    assert error.field == "applicant.name"
    assert "\\u" in error.message and "surrogate" in error.message


def test_the_field_is_named_in_lists_and_for_member_names() -> None:
    error = refused(b'{"danhSach": [{"noiDung": "ok"}, {"noiDung": "\\udfff"}]}',
                    "client.lone_surrogate")
    assert error.field == "danhSach[1].noiDung"
    error = refused(b'{"ok": 1, "\\ud800": 1}', "client.lone_surrogate")
    assert error.field == "body" and "member name" in error.message
    error = refused(b'{"a": {"\\ud800": 1}}', "client.lone_surrogate")
    assert error.field == "a"
    error = refused(b'"\\ud800"', "client.lone_surrogate")
    assert error.field == "body"


def test_pairs_and_characters_near_the_surrogates_are_taken() -> None:
    assert parse_json(b'"\\ud83d\\ude00"') == "\U0001f600"
    assert parse_json(b'"\\uD83D\\uDE00"') == "\U0001f600"
    assert parse_json(b'"\\ud55c\\uad6d"') == "한국"  # Hangul, escaped: \ud... not a surrogate
    assert parse_json(b'"\\ue000"') == "\ue000"
    # An escaped backslash followed by the letters "ud800" is text, not an escape.
    assert parse_json(b'"\\\\ud800"') == "\\ud800"


def test_raw_surrogate_bytes_are_not_utf8() -> None:
    # json.loads of bytes decodes with surrogatepass and would keep '\ud800'.
    assert json.loads(b'"\xed\xa0\x80"') == "\ud800"
    refused(b'"\xed\xa0\x80"', "client.unparseable")


def test_surrogates_in_utf16_bodies_are_found_too() -> None:
    assert parse_json('{"a": "ả"}'.encode("utf-16")) == {"a": "ả"}
    error = refused('{"a": "\\udfff"}'.encode("utf-16-le"), "client.lone_surrogate")
    assert error.field == "a"


# -- numbers ---------------------------------------------------------------------------------

def test_big_numbers() -> None:
    assert parse_json(b"9" * 4000) == int("9" * 4000)  # under Python's conversion limit
    assert parse_json(b"1e308") == 1e308
    assert parse_json(b"123456789012345678901234567890.5") == 1.2345678901234568e29
    error = refused(b'{"channel": ' + b"9" * 5000 + b"}", "client.unparseable")
    assert "digits" in error.message and "sys." not in error.message
    for literal in (b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity"):
        error = refused(b'{"amount": ' + literal + b"}", "client.unparseable")
        assert "finite" in error.message


def test_a_number_written_with_an_exponent_says_so() -> None:
    """The value is the float json.loads makes; its type tells the model how it was written
    (an amount must be plain digits, hub.model)."""
    value = parse_object(b'{"a": 1e3, "b": 2.5E-2, "c": 1.5, "d": 7, "e": [-1e+30]}')
    assert value == {"a": 1000.0, "b": 0.025, "c": 1.5, "d": 7, "e": [-1e30]}
    assert type(value["a"]) is type(value["b"]) is type(value["e"][0]) is jsonbody.ExponentNumber
    assert type(value["c"]) is float and type(value["d"]) is int
    assert json.dumps(value) == '{"a": 1000.0, "b": 0.025, "c": 1.5, "d": 7, "e": [-1e+30]}'


# -- members named twice ---------------------------------------------------------------------

@pytest.mark.parametrize(("body", "field", "where"), [
    (b'{"amount": 1, "amount": 1000000}', "amount", "the body has"),
    (b'{"fees": [{"code": "F"}, {"amount": 1, "code": "F", "amount": 1}]}', "fees[1].amount",
     "an object at fees[1] has"),
    (b'{"applicant": {"name": "A", "name": "B"}, "x": 1}', "applicant.name",
     "an object at applicant has"),
    (b'[1, {"a": {"b": 1, "b": 2}}]', "[1].a.b", "an object at [1].a has"),
    # Equal values too: whoever reads the bytes must not have to know that they are equal.
    (b'{"a": 1, "a": 1}', "a", "the body has"),
    # Escaped, the same name: "\u0061" is "a".
    (b'{"a": 1, "\\u0061": 2}', "a", "the body has"),
])
def test_a_member_named_twice_is_refused_naming_it(body: bytes, field: str,
                                                    where: str) -> None:
    error = refused(body, "client.duplicate_key")
    assert error.field == field
    assert error.message.startswith(f"{where} the member \"{field.rsplit('.', 1)[-1]}\" twice")
    assert "send each member once" in error.message


def test_of_several_members_named_twice_the_outermost_first_is_named() -> None:
    body = b'{"a": {"x": 1, "x": 2}, "b": {"y": 1, "y": 2}, "a": 3}'
    assert refused(body, "client.duplicate_key").field == "a"
    body = b'{"a": {"x": 1, "x": 2}, "b": {"y": 1, "y": 2}}'
    assert refused(body, "client.duplicate_key").field == "a.x"


def test_a_member_name_named_twice_with_a_lone_surrogate_is_named_by_its_escape() -> None:
    error = refused(b'{"\\ud800": 1, "\\ud800": 2}', "client.duplicate_key")
    assert error.field == "\\ud800"  # the escape, as text: the refusal must be UTF-8


def test_the_same_name_in_different_objects_is_no_duplicate() -> None:
    body = b'{"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}]}'
    assert parse_object(body) == json.loads(body)


def test_a_member_named_twice_beside_what_else_is_refused_is_still_a_4xx() -> None:
    # The duplicate stops the parse before the deep member (and the number no int holds) that
    # follows it; naming it parses again, which must not fail on them.
    refused(b'{"x": {"a": 1, "a": 2}, "b": ' + nested(5000) + b"}", "client.too_deep")
    error = refused(b'{"x": {"a": 1, "a": 2}, "b": ' + b"9" * 5000 + b"}",
                    "client.duplicate_key")
    assert error.field == "x.a"
    refused(b'{"x": {"a": 1, "a": 2}, "b": NaN}', "client.duplicate_key")
    # What closes the outer object comes after: the number is met first.
    refused(b'{"a": 1, "a": 2, "b": ' + b"9" * 5000 + b"}", "client.unparseable")


def test_envelopes_from_the_broker_refuse_a_member_named_twice() -> None:
    """Signed bytes: the hub's json.loads would take the last "data" and verify the signature
    over the bytes; a consumer of another language may take the first."""
    env = Envelope.new(source="VN:GOV:000.00.00.H56:igate", type="vn.gov.dossier.submitted",
                       subject="000.00.00.H56-250101-0001", data={"amount": "1"})
    body = env.to_bytes()
    assert Envelope.from_bytes(body) == env
    twice = body.replace(b'"data":{', b'"data":{"amount":"1000000",', 1)
    with pytest.raises(InvalidMessage) as info:
        Envelope.from_bytes(twice)
    assert (info.value.code, info.value.field) == ("client.duplicate_key", "data.amount")
    with pytest.raises(jsonbody.DuplicateMember):
        jsonbody.loads_unique(b'{"id": "a", "id": "b"}')


# -- not an object, not JSON, not UTF-8 ------------------------------------------------------

@pytest.mark.parametrize(("body", "kind"), [(b"[1, 2]", "array"), (b'"x"', "string"),
                                            (b"1", "number"), (b"1.5", "number"),
                                            (b"null", "null"), (b"true", "boolean")])
def test_a_body_that_is_not_an_object(body: bytes, kind: str) -> None:
    assert parse_json(body) == json.loads(body)
    with pytest.raises(ValidationError) as info:
        parse_object(body)
    assert info.value.code == "client.schema_invalid" and info.value.field == "body"
    assert f"a JSON {kind};" in info.value.message


@pytest.mark.parametrize("body", [b"", b" ", b"{", b'{"a": 1,}', b"{'a': 1}", b'{"a": 1} x',
                                  b"<xml/>", b'{"a": "\x01"}'])
def test_what_is_not_json_is_unparseable(body: bytes) -> None:
    error = refused(body, "client.unparseable")
    assert "not valid JSON" in error.message


@pytest.mark.parametrize("body", [b"\xff{}", b'{"a": "\xc3"}', b'{"a": "\xe1\xba"}',
                                  b'{"a": "\xc0\xaf"}', b"\x00\xff{"])
def test_what_is_not_utf8_is_unparseable(body: bytes) -> None:
    error = refused(body, "client.unparseable")
    assert "at byte" in error.message


def test_a_utf8_byte_order_mark_is_taken() -> None:
    assert parse_object(b'\xef\xbb\xbf{"a": "\xc3\xa1"}') == {"a": "á"}


def test_what_names_the_body_in_messages() -> None:
    error = refused(b"nope", "client.unparseable", what="the webhook body")
    assert error.message.startswith("the webhook body is not valid JSON")


# -- at every door, through the app ----------------------------------------------------------

@pytest.fixture(name="hub")
def hub_fixture(make_hub: Callable[..., Hub], monkeypatch: pytest.MonkeyPatch) -> Hub:
    """The hub of test_api_hostile: the installed adapters, their callbacks' secrets set."""
    monkeypatch.setenv("LIENTHONG_PAYMENT_SECRET", SECRET)
    monkeypatch.setenv("LIENTHONG_POSTAL_WEBHOOK_TOKEN", POSTAL_TOKEN)
    return make_hub(registry=requests_registry(), adapters=None)


@pytest.mark.parametrize("route", ROUTES, ids=[r.path for r in ROUTES])
def test_a_member_named_twice_is_refused_at_every_door(hub: Hub, route: Route) -> None:
    """Each REST route and each callback, its valid body with its first member sent once more
    before it, with another value: json.loads would read the last one (the one a gateway's
    checksum or an upstream's signature was made for), another parser the first."""
    code = new_code()
    body = route.seal(hub, route.body(hub, code))
    first = next(iter(body))
    content = json.dumps(body, ensure_ascii=False).encode()
    content = b"{" + json.dumps(first).encode() + b': "1", ' + content[1:]
    before = hub.outbox_count()
    answer = _post(hub, route, code, content)
    assert answer.status_code == 400, answer.text
    problem = answer.json()
    assert (problem["code"], problem["field"], problem["origin"]) == (
        "client.duplicate_key", first, "hub")
    assert hub.outbox_count() == before
    # The same body, each member once, is taken: the refusal is the duplicate's.
    again = json.dumps(route.seal(hub, route.body(hub, code)), ensure_ascii=False).encode()
    assert _post(hub, route, code, again).status_code == 202


def test_a_systems_reply_naming_a_member_twice_is_a_bad_reply() -> None:
    """The replies of the systems the hub calls (hub.transport) are JSON from outside too: a
    gateway's checksum checked over the last "SoTien" would vouch for a reply another reader
    takes the first of. The system's HTTP server is a stand-in: what is tested is the
    reading of its bytes."""
    replies = {"/twice": b'{"MaLoi": "00", "SoTien": 1, "SoTien": 150000}',
               "/once": b'{"MaLoi": "00", "SoTien": 150000}'}

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=replies[request.url.path],
                              headers={"content-type": "application/json"})

    async def call(path: str) -> Any:
        transport = HttpTransport("payment", "the gateway", base_url="http://gateway.test",
                                  timeout=5, transport=httpx.MockTransport(answer))
        try:
            return (await transport.send(Request("INIT", path))).body
        finally:
            await transport.aclose()

    assert asyncio.run(call("/once")) == {"MaLoi": "00", "SoTien": 150000}
    with pytest.raises(InvalidMessage) as info:
        asyncio.run(call("/twice"))
    assert info.value.code == "system.bad_reply" and "SoTien twice" in info.value.message
