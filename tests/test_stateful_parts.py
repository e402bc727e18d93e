"""The hub modules the payment and postal adapters were shrunk onto, each on its own: a table of
transitions read from its file (hub.transitions), a checksum's field orders, one message kind's
or a file's (hub.fieldchecksum), a mapping file's problems named table.key
(hub.tomlmap.checked, dotted), a callback's shared token (hub.callbacktoken), ranges and files
of pool numbers (hub.numberranges), derived event ids (hub.envelope.derived_id) and a
simulator's own switches (hub.simulation.SwitchedSystem.own). The SQL parts (hub.statestore,
hub.parked, hub.numberpool) are tested through the adapters' ports on both databases
(test_adapter_payment_ledger.py, test_adapter_postal_pool.py, test_adapter_postal_orders.py)."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import BaseModel

from hub import tomlmap
from hub.callbacktoken import BadToken, check_token
from hub.envelope import derived_id
from hub.errors import ConfigError, SecretMissing
from hub.fieldchecksum import SECRET, FieldChecksum, Order, parse_orders
from hub.numberranges import PLAIN, Numbers, Series, expand, read_file
from hub.simulation import SwitchedSystem, Switches, one_of
from hub.stateful import fields_file
from hub.tomlmap import Table, TimedFile, WireName
from hub.transitions import IllegalTransition, Transition, Transitions


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "transitions.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_table_of_transitions_is_read_from_its_file(tmp_path: Path) -> None:
    table = Transitions.load(write(tmp_path, """
[open]
done = { to = "closed", publish = true }
wrong = { to = "open", park = "client.wrong" }
[closed]
done = { to = "closed", park = "client.already_done" }
"""), "an order")
    assert table.states() == ("open", "closed")
    assert table.step("open", "done") == Transition("closed", publish=True)
    assert table[("open", "wrong")] == Transition("open", park="client.wrong")
    assert len(table) == 3 and ("closed", "done") in table
    assert table.stepped("closed", "done") == "closed"
    assert table.stepped("closed", "wrong") is None  # no such move: the record moved on
    with pytest.raises(IllegalTransition) as caught:
        table.step("closed", "wrong")
    assert str(caught.value) == ("an order in state 'closed' cannot take outcome 'wrong'; "
                                 "allowed from 'closed': ['done']")


@pytest.mark.parametrize(("text", "field", "words"), [
    ('[open]\ndone = { to = "closed", pubish = true }\n[closed]\n',
     "transitions.toml [open].done", "pubish is not a known key"),
    ('[open]\ndone = { publish = true }\n', "transitions.toml [open].done.to", "missing"),
    ('[open]\ndone = { to = "closed" }\n', "transitions.toml", "['closed']"),
    ('[open]\ndone = "closed"\n', "transitions.toml [open].done", ""),
])
def test_a_broken_table_of_transitions_names_the_place(tmp_path: Path, text: str, field: str,
                                                       words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Transitions.load(write(tmp_path, text), "an order")
    assert caught.value.field == field
    assert words in caught.value.message


def test_the_checksum_of_a_message_follows_its_order() -> None:
    mac = FieldChecksum("Mac")
    order = ("A", "B", SECRET, "C")
    message = {"A": "x", "B": 12, "C": None}
    assert mac.plain_text(message, order, "k") == "x|12|k|"
    signed = mac.sign(message, order, "k")
    assert signed["Mac"] == mac.compute(message, order, "k") and "Mac" not in message
    assert mac.matches(signed, order, "k")
    assert mac.matches({**signed, "Mac": signed["Mac"].upper()}, order, "k")
    assert not mac.matches(signed, order, "other secret")
    assert not mac.matches({**signed, "B": 13}, order, "k")
    assert not mac.matches(message, order, "k")  # no checksum at all
    with pytest.raises(TypeError):
        mac.plain_text({"A": True}, order, "k")


class Orders(Table):
    init: Order


@pytest.mark.parametrize(("order", "words"), [
    (["A", "B"], "exactly once"),
    (["A", SECRET, SECRET], "exactly once"),
    (["A", "A", SECRET], "twice"),
    ([], "needs order"),
    (["", SECRET], "needs order"),
])
def test_a_checksum_order_names_the_secret_once_and_no_field_twice(order: list[str],
                                                                   words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        tomlmap.checked(Orders, {"init": {"order": order}}, "checksums.toml", dotted=True)
    assert caught.value.field == "init.order"
    assert words in caught.value.message and "checksums.toml" in caught.value.message


class Names(Table):
    waybill: WireName
    state: WireName = "State"


class Fields(BaseModel):
    order: Names


def test_each_kinds_order_is_read_and_a_kind_left_out_is_named() -> None:
    doc = {"ask": {"order": ["A", SECRET]}, "reply": {"order": ["B", "C", SECRET]}}
    assert parse_orders(doc, ("ask", "reply"), "sums.toml") == {
        "ask": ("A", SECRET), "reply": ("B", "C", SECRET)}
    with pytest.raises(ConfigError) as err:
        parse_orders({"ask": doc["ask"]}, ("ask", "reply"), "sums.toml")
    assert err.value.field == "reply"
    assert "sums.toml" in err.value.message


def test_dotted_problems_name_table_and_key_and_a_missing_key_alone() -> None:
    def problem(doc: dict[str, Any], dotted: bool = True) -> ConfigError:
        with pytest.raises(ConfigError) as caught:
            tomlmap.checked(Fields, doc, "fields.toml", dotted=dotted)
        return caught.value

    assert problem({"order": {}}).field == "waybill"
    assert problem({"order": {"waybill": ""}}).field == "order.waybill"
    assert problem({"order": {"waybill": "W", "stat": "S"}}).field == "order"
    assert "stat is not a known key" in problem({"order": {"waybill": "W", "stat": "S"}}).message
    assert problem({"order": {}}, dotted=False).field == "fields.toml [order].waybill"


class TimedFields(TimedFile):
    order: Names


def test_a_fields_file_is_checked_with_the_time_of_its_wire(tmp_path: Path) -> None:
    path = tmp_path / "fields.toml"
    path.write_text('time_format = "%d/%m/%Y %H:%M"\n[order]\nwaybill = "W"\n')
    fields, time = fields_file(TimedFields, path)
    assert (fields.order.waybill, fields.order.state) == ("W", "State")
    assert time.read("01/01/2025 08:00", "T").isoformat() == "2025-01-01T08:00:00+07:00"
    assert tomlmap.load(TimedFields, path, dotted=True) == fields
    path.write_text('[order]\nwaybill = ""\n')
    with pytest.raises(ConfigError) as caught:
        fields_file(TimedFields, path)
    assert caught.value.field == "order.waybill" and "fields.toml" in caught.value.message


def test_a_shared_token_opens_the_callback_only_once_set_and_only_when_carried() -> None:
    def check(headers: dict[str, str], expected: str | None) -> None:
        check_token(headers, "X-Token", expected, "HOOK_TOKEN", "the test webhook")

    with pytest.raises(SecretMissing) as shut:
        check({"X-Token": "anything"}, None)
    assert "HOOK_TOKEN" in shut.value.message and shut.value.field == "X-Token"
    with pytest.raises(BadToken) as wrong:
        check({"X-Token": "guess"}, "s3cret")
    assert wrong.value.code == "client.bad_token" and wrong.value.http_status == 401
    with pytest.raises(BadToken):
        check({}, "s3cret")
    check({"x-token": "s3cret"}, "s3cret")  # header names are case-insensitive


def test_derived_ids_are_the_same_for_the_same_fact() -> None:
    first = derived_id("payment", "completed", "P", "R", "T")
    assert first == derived_id("payment", "completed", "P", "R", "T")
    assert first != derived_id("payment", "completed", "P", "R", "T2")
    assert first != derived_id("postal", "completed", "P", "R", "T")
    assert uuid.UUID(first).version == 5


class Toy(SwitchedSystem):
    own: ClassVar[Switches] = {"mode": one_of("a", "b"), "size": int,
                               "seen": lambda value: {str(v) for v in value}}

    def __init__(self) -> None:
        self.mode, self.size, self.seen = "a", 1, {"x"}
        super().__init__(self.new_app("Toy"))


def test_a_simulators_own_switches_are_read_and_set_by_their_table() -> None:
    sim = Toy()
    assert sim.switches() == {"slow": 0.0, "fail": 0, "fail_status": 503, "mode": "a",
                              "size": 1, "seen": ["x"]}
    sim.set_switches(mode="b", size="3", seen=["z", "y"], fail=2)
    assert (sim.mode, sim.size, sim.seen, sim.faults.fail_next) == ("b", 3, {"y", "z"}, 2)
    assert sim.switches()["seen"] == ["y", "z"]
    for bad in ({"mode": "c"}, {"size": "many"}, {"colour": "red"}):
        with pytest.raises(ValueError, match="unknown switch or bad value"):
            sim.set_switches(**bad)
    assert (sim.mode, sim.size) == ("b", 3)


def _number(text: str, where: str) -> str:
    if not text.isalnum():
        raise ConfigError(f"{text!r} is not a number", field=where)
    return text


def test_number_ranges_step_the_serial_of_the_first_kind_both_ends_are() -> None:
    # A kind whose check digit is the serial's last digit doubled, mod 10.
    doubled = Series(re.compile(r"^(?P<prefix>[A-Z])(?P<serial>\d{3})\d(?P<suffix>X)$"),
                     "are of two series", lambda s: str(int(s[-1]) * 2 % 10))
    assert expand("R0086X", "R0100X", _number, (doubled, PLAIN)) == [
        "R0086X", "R0098X", "R0100X"]
    assert expand("AB098", "AB101", _number, (doubled, PLAIN)) == [
        "AB098", "AB099", "AB100", "AB101"]
    for first, last, message in [("R0086X", "Q0100X", "are of two series"),
                                 ("AB1", "AB01", "same width"), ("AB9", "AB1", "backwards"),
                                 ("A0000000", "A2000000", "at most 1000000"),
                                 ("A-1", "A2", "not a number")]:
        with pytest.raises(ConfigError, match=message):
            expand(first, last, _number, (doubled, PLAIN))


def test_a_file_of_numbers_skips_comments_and_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "numbers.txt"
    path.write_text("# batch\nAB1\n\nAB2  # spare\nA-3\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_file(path, _number)
    assert err.value.field == "numbers.txt:5"
    path.write_text("# batch\nAB1\n\nAB2  # spare\n", encoding="utf-8")
    assert read_file(path, _number) == ["AB1", "AB2"]


def test_numbers_given_alone_in_a_file_and_as_a_range_are_checked_each(tmp_path: Path) -> None:
    path = tmp_path / "more.txt"
    path.write_text("AB7\n", encoding="utf-8")
    numbers = Numbers(_number, what="ticket")
    assert numbers.given(["AB1"], path, "AB3", "AB4") == ["AB1", "AB7", "AB3", "AB4"]
    assert numbers.given(first="AB9") == ["AB9"]  # a first number alone: that number
    with pytest.raises(ConfigError) as err:
        numbers.given(["A-1"])
    assert err.value.field == "ticket"


def test_a_file_of_tables_checks_each_whatever_its_name(tmp_path: Path) -> None:
    path = tmp_path / "accounts.toml"
    path.write_text('[default]\nwaybill = "W"\n["000.00.00.H56"]\nwaybill = "X"\nstate = "S"\n')
    found = tomlmap.tables(Names, path, dotted=True)
    assert found == {"default": Names(waybill="W"), "000.00.00.H56": Names(waybill="X", state="S")}
    path.write_text('[default]\nwaybill = "W"\n["000.00.00.H56"]\nwaybill = ""\n')
    with pytest.raises(ConfigError) as caught:
        tomlmap.tables(Names, path, dotted=True)
    assert caught.value.field == "000.00.00.H56.waybill"


class Replies(Table):
    codes: Annotated[dict[str, Names], tomlmap.listing("00", "success")]


def test_a_table_of_codes_must_list_the_one_declared() -> None:
    assert "00" in tomlmap.checked(Replies, {"codes": {"00": {"waybill": "W"}}}, "codes.toml").codes
    with pytest.raises(ConfigError) as caught:
        tomlmap.checked(Replies, {"codes": {"01": {"waybill": "W"}}}, "codes.toml", dotted=True)
    assert caught.value.field == "codes"
    assert 'must define "00" (success)' in caught.value.message
