"""hub.wiretemplate: a system's message declared in its mapping files."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import ConfigError
from hub.wiretemplate import Messages, WireTemplate

DOC = {"init": {"Kind": "INIT", "Ref": "$reference", "Lines": "$lines",
                "Receipt": {"Code": 2, "Who": "$payer"}}}


def test_values_fill_the_dollar_names_and_the_rest_is_sent_as_written() -> None:
    template = WireTemplate.parse(DOC, "init", "messages.toml")
    assert template.fill({"reference": "R1", "lines": [{"a": 1}], "payer": "X", "other": 3}) == {
        "Kind": "INIT", "Ref": "R1", "Lines": [{"a": 1}], "Receipt": {"Code": 2, "Who": "X"}}


def test_a_name_the_adapter_does_not_give_names_the_file_and_the_table() -> None:
    template = WireTemplate.parse(DOC, "init", "messages.toml")
    with pytest.raises(ConfigError) as err:
        template.fill({"reference": "R1", "lines": []})
    assert err.value.field == "messages.toml [init]"
    assert "$payer" in err.value.message


def test_a_missing_table_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        WireTemplate.parse(DOC, "query", "messages.toml")
    assert err.value.field == "messages.toml [query]"


def test_an_optional_name_leaves_its_field_out_when_its_value_is_none_or_empty() -> None:
    template = WireTemplate.parse({"party": {"Name": "$name", "Email": "$email?",
                                             "Tel": "$phone?"}}, "party", "messages.toml")
    assert template.fill({"name": "A", "email": None, "phone": ""}) == {"Name": "A"}
    assert template.fill({"name": "", "email": "a@b.vn", "phone": "09"}) == {
        "Name": "", "Email": "a@b.vn", "Tel": "09"}
    with pytest.raises(ConfigError) as err:
        template.fill({"name": "A"})
    assert "$email, $phone" in err.value.message


def test_a_messages_file_gives_its_templates_and_its_personal_fields(tmp_path: Path) -> None:
    path = tmp_path / "messages.toml"
    path.write_text('personal = ["Who"]\n[init]\nRef = "$reference"\n[query]\nRef = "$reference"\n')
    messages = Messages.load(path, "init", "query")
    assert messages["query"].fill({"reference": "R1"}) == {"Ref": "R1"}
    assert messages.personal == frozenset({"Who"})
    with pytest.raises(ConfigError) as err:
        Messages.load(path, "init", "fee_line")
    assert err.value.field == "messages.toml [fee_line]"
