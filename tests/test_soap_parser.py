"""The hardened parser refuses every DTD-based attack, too large and too deep documents."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from hub.api.errors import BodyTooLarge
from hub.api.soap.parser import LIBXML2_MAX_DEPTH, MAX_DEPTH, new_parser, parse_document
from hub.errors import InvalidMessage

LIMIT = 1_048_576

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lolz>&lol9;</lolz>"""

QUADRATIC_BLOWUP = (b'<?xml version="1.0"?><!DOCTYPE q [<!ENTITY a "' + b"x" * 50_000
                    + b'">]><q>' + b"&a;" * 1000 + b"</q>")


def _xxe(target: str) -> bytes:
    return (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY x SYSTEM "{target}">]>'
            "<e>&x;</e>").encode()


def _parse(body: bytes, **kw: int) -> etree._Element:
    return parse_document(body, max_bytes=kw.get("max_bytes", LIMIT),
                          max_depth=kw.get("max_depth", MAX_DEPTH))


def _refused(body: bytes, code: str, **kw: int) -> InvalidMessage:
    with pytest.raises(InvalidMessage) as info:
        _parse(body, **kw)
    assert info.value.code == code, info.value
    return info.value


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    secret = tmp_path / "secret.txt"
    secret.write_text("CANARY-SECRET")
    return secret


@pytest.fixture
def listener() -> Iterator[tuple[str, list[str]]]:
    """An HTTP server that records every request made to it: network access would show."""
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'<!ENTITY y "NETWORK">')

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()
        thread.join()


def test_a_plain_document_parses() -> None:
    root = _parse(b'<?xml version="1.0" encoding="utf-8"?><a xmlns="urn:x"><b>1</b></a>')
    assert root.tag == "{urn:x}a"
    assert root[0].text == "1"


def test_comments_and_processing_instructions_are_dropped() -> None:
    root = _parse(b"<a><?pi data?><!-- note --><b>1</b></a>")
    assert [c.tag for c in root] == ["b"]


def test_xxe_reading_a_local_file_is_refused(canary: Path) -> None:
    error = _refused(_xxe(canary.as_uri()), "client.dtd_forbidden")
    assert "DOCTYPE" in error.message


def test_xxe_over_the_network_is_refused_without_a_connection(
        listener: tuple[str, list[str]]) -> None:
    url, hits = listener
    _refused(_xxe(f"{url}/xxe"), "client.dtd_forbidden")
    body = f'<?xml version="1.0"?><!DOCTYPE e SYSTEM "{url}/dtd"><e/>'.encode()
    _refused(body, "client.dtd_forbidden")
    assert hits == []


def test_parameter_entities_are_refused(listener: tuple[str, list[str]]) -> None:
    url, hits = listener
    body = (f'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY % p SYSTEM "{url}/p"> %p;]>'
            "<e>&y;</e>").encode()
    _refused(body, "client.dtd_forbidden")
    assert hits == []


def test_billion_laughs_is_refused() -> None:
    _refused(BILLION_LAUGHS, "client.dtd_forbidden")


def test_quadratic_blowup_is_refused() -> None:
    _refused(QUADRATIC_BLOWUP, "client.dtd_forbidden")


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-16-be"])
def test_a_doctype_in_utf16_is_refused(codec: str, canary: Path) -> None:
    text = _xxe(canary.as_uri()).decode().replace('version="1.0"',
                                                  'version="1.0" encoding="UTF-16"')
    _refused(text.encode(codec), "client.dtd_forbidden")


def test_a_doctype_the_byte_scan_cannot_see_is_refused_after_parsing(canary: Path) -> None:
    # UTF-32 hides "<!DOCTYPE" from the byte scan; the parsed document still shows the DTD.
    body = _xxe(canary.as_uri()).decode().replace(
        'version="1.0"', 'version="1.0" encoding="UTF-32"').encode("utf-32")
    assert b"<!DOCTYPE".decode().encode("utf-32")[4:] in body  # really there, in UTF-32
    error = _refused(body, "client.dtd_forbidden")
    assert "CANARY" not in error.message


def test_the_parser_itself_never_resolves_entities(canary: Path,
                                                   listener: tuple[str, list[str]]) -> None:
    # Below the DOCTYPE refusal, the parser's own settings hold on their own.
    url, hits = listener
    root = etree.fromstring(_xxe(canary.as_uri()), new_parser())
    assert b"CANARY" not in etree.tostring(root)
    root = etree.fromstring(_xxe(f"{url}/x"), new_parser())
    assert b"NETWORK" not in etree.tostring(root)
    assert hits == []
    with pytest.raises(etree.XMLSyntaxError):
        etree.fromstring(BILLION_LAUGHS, new_parser())


def test_too_large_is_refused_before_parsing() -> None:
    body = b"<a>" + b"x" * 2000 + b"</a>"
    with pytest.raises(BodyTooLarge) as info:
        _parse(body, max_bytes=1000)
    assert info.value.code == "client.body_too_large"
    assert "1000" in info.value.message
    assert _parse(body, max_bytes=len(body)).tag == "a"


def _nested(depth: int) -> bytes:
    return b"<a>" * depth + b"</a>" * depth


def test_depth_limit() -> None:
    assert _parse(_nested(MAX_DEPTH)).tag == "a"
    error = _refused(_nested(MAX_DEPTH + 1), "client.too_deep")
    assert str(MAX_DEPTH) in error.message
    _refused(_nested(20), "client.too_deep", max_depth=10)


@pytest.mark.parametrize("depth", [LIBXML2_MAX_DEPTH + 1, 300, 100_000])
def test_very_deep_documents_stop_in_the_parser(depth: int) -> None:
    # libxml2's own guard (no huge_tree) stops the parse long before memory suffers; the
    # refusal is the hub's own, whichever limit fired first.
    error = _refused(_nested(depth), "client.too_deep")
    assert str(MAX_DEPTH) in error.message
    # With a limit above libxml2's, the message names the limit that actually held.
    error = _refused(_nested(depth), "client.too_deep", max_depth=1000)
    assert str(LIBXML2_MAX_DEPTH) in error.message


def test_libxml2_depth_limit_is_where_the_hub_expects_it() -> None:
    assert _parse(_nested(LIBXML2_MAX_DEPTH), max_depth=LIBXML2_MAX_DEPTH).tag == "a"
    with pytest.raises(etree.XMLSyntaxError, match="Excessive depth"):
        etree.fromstring(_nested(LIBXML2_MAX_DEPTH + 1), new_parser())


def test_a_wide_document_is_checked_quickly() -> None:
    body = b"<a>" + b"<b/>" * 200_000 + b"</a>"
    assert len(_parse(body)) == 200_000


@pytest.mark.parametrize("body", [b"", b"   ", b"<a>", b"not xml", b"<a></b>", b"<a/><b/>"])
def test_malformed_documents_are_unparseable(body: bytes) -> None:
    error = _refused(body, "client.unparseable")
    assert "well-formed" in error.message or "empty" in error.message


def test_entity_references_without_a_dtd_are_unparseable() -> None:
    _refused(b"<a>&undefined;</a>", "client.unparseable")

