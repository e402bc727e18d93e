from datetime import date
from typing import Any

import pytest

from hub import codes
from hub.errors import CodeError


@pytest.mark.parametrize(
    "value", ["000.00.00.H56", "000.00.00.G22", "H55.242", "000.20.31.H56", "000.00.00.H30"]
)
def test_agency_codes_accepted(value: str) -> None:
    assert codes.parse_agency(value).value == value


@pytest.mark.parametrize("value", ["", "H5", "000.00.00.56", "000.00.00.h56", "000-00-00-H56", "x"])
def test_agency_code_refused_names_field(value: str) -> None:
    with pytest.raises(CodeError) as err:
        codes.parse_agency(value, "agency_code")
    assert err.value.field == "agency_code"
    assert err.value.code == "client.bad_code"


def test_agency_anchor_and_kind() -> None:
    assert codes.parse_agency("000.20.31.H56").anchor == "H56"
    assert codes.parse_agency("000.00.00.G22").is_ministry
    assert not codes.parse_agency("H55.242").is_ministry


def test_dossier_code_parts() -> None:
    d = codes.parse_dossier("000.00.00.H56-250101-0001")
    assert d.agency.value == "000.00.00.H56"
    assert d.day == date(2025, 1, 1)
    assert d.counter == 1


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("000.00.00.H56-251301-0001", "not a real yyMMdd date"),
        ("000.00.00.H56-250101-0000", "counter 0000"),
        ("000.00.00.H56-250101-001", "is not a dossier code"),
        ("H56-250101", "is not a dossier code"),
    ],
)
def test_dossier_code_refused_with_reason(value: str, why: str) -> None:
    with pytest.raises(CodeError, match=why):
        codes.parse_dossier(value)


@pytest.mark.parametrize(
    ("value", "base", "agency", "service"),
    [
        ("2.002492", "2.002492", None, None),
        ("2.000815.000.00.00.H55", "2.000815", "000.00.00.H55", None),
        ("1.010708.01", "1.010708", None, "01"),
    ],
)
def test_procedure_codes(value: str, base: str, agency: str | None, service: str | None) -> None:
    p = codes.parse_procedure(value)
    assert (p.base, p.agency.value if p.agency else None, p.service) == (base, agency, service)


@pytest.mark.parametrize("value", ["2.00249", "22.002492", "2-002492", "2.002492.x"])
def test_procedure_code_refused(value: str) -> None:
    with pytest.raises(CodeError):
        codes.parse_procedure(value)


def test_identity_numbers() -> None:
    assert codes.parse_identity("001203004567") == "001203004567"
    with pytest.raises(CodeError, match="exactly 12 digits"):
        codes.parse_identity("123456789")
    assert codes.parse_identity("123456789", allow_old=True) == "123456789"
    with pytest.raises(CodeError):
        codes.parse_identity("00120300456A")
    with pytest.raises(CodeError, match="must be a string"):
        codes.parse_identity(1234)


def test_routing_encoding_is_reversible() -> None:
    for code in ["000.00.00.H56", "2.000815.000.00.00.H55"]:
        encoded = codes.encode_for_routing(code)
        assert "." not in encoded
        assert codes.decode_from_routing(encoded) == code


def test_identity_error_does_not_echo_the_number() -> None:
    with pytest.raises(CodeError) as err:
        codes.parse_identity("0012030045678")  # 13 digits: a real number with a slip
    assert "0012030045678" not in str(err.value)
    assert "13 characters" in str(err.value)


@pytest.mark.parametrize("parse, value", [
    (codes.parse_agency, "０00.00.00.H56"),  # fullwidth zero
    (codes.parse_agency, "000.00.00.H\u09eb\u09ec"),  # Bengali five and six
    (codes.parse_dossier, "000.00.00.H56-250101-000\u0663"),  # Arabic-Indic three
    (codes.parse_procedure, "\uff12.002492"),
    (codes.parse_identity, "\uff10" * 12),
])
def test_only_ascii_digits_are_digits(parse: Any, value: str) -> None:
    """Python's \\d matches any Unicode digit; the contracts (and every system downstream)
    mean 0-9."""
    with pytest.raises(CodeError):
        parse(value)


@pytest.mark.parametrize(("parse", "value"), [
    (codes.parse_agency, " 000.20.31.H56"),
    (codes.parse_dossier, "000.00.00.H56-250102-0007\n"),
    (codes.parse_procedure, "\t1.010708"),
    (codes.parse_identity, "038095001234\u3000"),  # an ideographic space
])
def test_blanks_around_a_code_are_refused_unless_stripping_is_asked(parse: Any,
                                                                    value: str) -> None:
    """The contracts' patterns hold no blanks: the model and the entry points take a code as
    written. An adapter reading a system's own format may ask for them to be stripped."""
    with pytest.raises(CodeError) as err:
        parse(value, "f")
    assert (err.value.field, err.value.code) == ("f", "client.bad_code")
    assert "blanks" in err.value.message and value.strip() not in err.value.message
    parsed = parse(value, "f", strip=True)
    assert (parsed if isinstance(parsed, str) else parsed.value) == value.strip()
