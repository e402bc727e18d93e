"""Contracts judge documents as jsonschema does: the fast valid-or-not check (jsonschema-rs)
never lets through what jsonschema refuses, and refusals are described by jsonschema."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.contracts import Contract
from hub.model import Dossier

ROOT = Path(__file__).resolve().parent.parent
DIRECTORIES = sorted({p.parent for p in (ROOT / "schemas").glob("*/*.schema.json")})


def _portal_request() -> dict[str, Any]:
    from adapters.npsp.mapping import load_mapping
    from adapters.npsp.translate import dossier_to_record

    mapping = load_mapping(ROOT / "mappings" / "npsp")
    dossier = Dossier.model_validate({
        "code": "000.00.00.H56-300101-0001", "procedure_code": "2.002492",
        "procedure_name": "Cấp giấy phép xây dựng nhà ở riêng lẻ", "field_code": "G14",
        "agency_code": "000.00.00.H56",
        "applicant": {"identity_number": "001090012345", "name": "Nguyễn Văn An",
                      "birth_date": "1990-01-15", "address": "Số 1 phố Thử Nghiệm"},
        "channel": 1, "status": 1, "submitted_at": "2030-01-01T08:00:00+07:00",
        "due_at": "2030-01-16T08:00:00+07:00"})
    record = dossier_to_record(dossier, mapping)
    b = mapping.body
    return {b["session"]: "token", b["agency"]: "000.00.00.H56", b["service"]: "DongBoHoSoMC",
            b["updating"]: "False", b["data"]: [record]}


def _variants(document: Any) -> Iterator[Any]:
    """The document, and copies with one member changed in a way a contract may refuse."""
    yield document
    if isinstance(document, dict):
        for key, value in document.items():
            for other in (None, 1, "", "x\n", "1\n", "١٢٣", [], {}, True,
                          value + "\n" if isinstance(value, str) else value):
                changed = copy.deepcopy(document)
                changed[key] = other
                yield changed
            without = {k: v for k, v in document.items() if k != key}
            yield without
            if isinstance(value, (dict, list)):
                for inner in _variants(value if isinstance(value, dict) else
                                       (value[0] if value else {})):
                    changed = copy.deepcopy(document)
                    changed[key] = inner if isinstance(value, dict) else [inner]
                    yield changed
        yield {**document, "unexpected": 1}


@pytest.mark.parametrize("directory", DIRECTORIES, ids=lambda p: p.name)
def test_the_fast_check_agrees_with_jsonschema(directory: Path) -> None:
    fast = Contract(directory)
    slow = Contract(directory)
    slow._fast = {}
    documents: list[Any] = [{}, [], "x", None, 1]
    if directory.name == "npsp":
        documents.append(_portal_request())
    checked = 0
    for name in fast.names:
        for document in documents:
            for variant in _variants(document):
                assert fast.problem(name, variant) == slow.problem(name, variant), (name, variant)
                checked += 1
    assert checked > 0


def test_a_valid_portal_request_is_valid_and_its_errors_named() -> None:
    contract = Contract(ROOT / "schemas" / "npsp")
    request = _portal_request()
    assert contract.problem("DongBoHoSoMC.request", request) is None
    assert "DongBoHoSoMC.request" in contract._fast
    broken = copy.deepcopy(request)
    broken[next(iter(broken))] = 7  # the session token, a string in the schema
    found = contract.problem("DongBoHoSoMC.request", broken)
    assert found is not None and found[0] == next(iter(broken))
