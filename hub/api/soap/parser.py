"""Hardened XML parsing for what arrives from outside.

An XML request can attack its parser before any check of ours runs: external entities read
local files or reach into the network (XXE), nested entities expand a few hundred bytes into
gigabytes ("billion laughs"), deep nesting exhausts stacks. A SOAP message has no use for any of
that (SOAP 1.1 and 1.2 both forbid a document type declaration), so the parser refuses it all:

- no DTD: a ``<!DOCTYPE`` is refused before parsing (the bytes are scanned in the encodings a
  SOAP message may use) and again after parsing, from the parsed document itself, so no
  encoding trick slips one through; entities are never resolved nor loaded;
- no network access, no huge-tree mode (libxml2 keeps its own size and amplification limits);
- a size limit (checked again here, whatever the HTTP layer did) and a depth limit (a
  document deeper than libxml2's own limit is refused with the same code).

Comments and processing instructions are dropped while parsing: nothing in a request depends on
them and canonical XML without comments ignores them anyway.
"""

from __future__ import annotations

import threading

from lxml import etree

from hub.api.errors import BodyTooLarge
from hub.errors import InvalidMessage
from hub.privacy import scrub

# Deeper than any valid request (the envelope, the request element and the dossier model nest
# about ten levels, an XML-DSig signature a few more), far below what recursion can suffer.
MAX_DEPTH = 64
# libxml2's own depth limit without huge_tree (xmlParserMaxDepth): a deeper document stops the
# parse itself, before the hub's check can run on the tree.
LIBXML2_MAX_DEPTH = 256

# The declarations that open every DTD-based attack, in the encodings SOAP allows (UTF-8 and
# UTF-16 in both byte orders; anything ASCII-compatible matches the first form).
_FORBIDDEN_MARKERS: tuple[bytes, ...] = tuple(
    marker.encode(codec)
    for marker in ("<!DOCTYPE", "<!ENTITY")
    for codec in ("ascii", "utf-16-le", "utf-16-be")
)

_PARSER_OPTIONS = {
    "resolve_entities": False,
    "no_network": True,
    "dtd_validation": False,
    "load_dtd": False,
    "huge_tree": False,
    "remove_comments": True,
    "remove_pis": True,
    "collect_ids": False,
}


def new_parser() -> etree.XMLParser:
    """A parser with every dangerous feature off. lxml parsers are not thread-safe: each thread
    needs its own (see ``parser_for_thread``)."""
    return etree.XMLParser(**_PARSER_OPTIONS)


_local = threading.local()


def parser_for_thread() -> etree.XMLParser:
    """This thread's hardened parser (a parser serialises its users; one per thread does not)."""
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = _local.parser = new_parser()
    return parser


_too_deep_xpaths: dict[int, etree.XPath] = {}


def _too_deep(max_depth: int) -> etree.XPath:
    # One compiled XPath per limit: "is there an element at depth max_depth + 1?", evaluated in
    # C over the whole tree (a few microseconds for a request).
    xpath = _too_deep_xpaths.get(max_depth)
    if xpath is None:
        xpath = etree.XPath("boolean(/" + "*/" * max_depth + "*)")
        _too_deep_xpaths[max_depth] = xpath
    return xpath


def refuse_dtd() -> InvalidMessage:
    return InvalidMessage(
        "the document contains a document type declaration (<!DOCTYPE or <!ENTITY); SOAP "
        "messages must not have one and the hub never processes DTDs or entities: remove it",
        code="client.dtd_forbidden",
    )


def parse_document(
    body: bytes,
    *,
    max_bytes: int,
    max_depth: int = MAX_DEPTH,
    parser: etree.XMLParser | None = None,
) -> etree._Element:
    """The root element of ``body``, or ``InvalidMessage`` / ``BodyTooLarge`` saying what is
    wrong with the document."""
    if len(body) > max_bytes:
        raise BodyTooLarge(
            f"the request has {len(body)} bytes, more than the limit of {max_bytes}; send "
            "attachments by reference (URL, size, SHA-256), never inline"
        )
    if any(marker in body for marker in _FORBIDDEN_MARKERS):
        raise refuse_dtd()
    try:
        root = etree.fromstring(body, parser or parser_for_thread())
    except etree.XMLSyntaxError as exc:
        if _excessive_depth(exc):
            # The same refusal as the hub's own limit: a client matching on client.too_deep
            # must not see client.unparseable only because its document was deeper still.
            raise _refuse_too_deep(min(max_depth, LIBXML2_MAX_DEPTH)) from None
        raise InvalidMessage(
            f"the request is not well-formed XML: {_syntax_message(exc)}; send one SOAP "
            "envelope in UTF-8",
            code="client.unparseable",
        ) from None
    if root is None:  # lxml returns None for some recoverable empty inputs
        raise InvalidMessage("the request body is empty; send a SOAP envelope",
                             code="client.unparseable")
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise refuse_dtd()
    if _too_deep(max_depth)(root):
        raise _refuse_too_deep(max_depth)
    return root


def _refuse_too_deep(max_depth: int) -> InvalidMessage:
    return InvalidMessage(
        f"the document nests elements more than {max_depth} levels deep; no request of "
        "this service needs that many: send the request as the WSDL describes it",
        code="client.too_deep",
    )


def _excessive_depth(exc: etree.XMLSyntaxError) -> bool:
    # libxml2 says "Excessive depth in document: 256 use XML_PARSE_HUGE option"; its error code
    # changed across versions (XML_ERR_INTERNAL_ERROR, then XML_ERR_RESOURCE_LIMIT), the words
    # did not.
    return "Excessive depth" in str(exc.msg or exc)


def _syntax_message(exc: etree.XMLSyntaxError) -> str:
    return scrub(str(exc.msg or exc).strip()[:300])
