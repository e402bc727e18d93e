"""``pins.toml``: which algorithm a key signs with when it is not its key type's default.

One file per directory (the keys directory for our own signers, the trust directory for the
keys we verify), mapping a kid or a system id to an algorithm::

    "VN:GOV:000.00.00.G22:bhxh" = "PS256"                      # every key of that system
    "q3J5...Wc" = "PS256"                                       # one certificate, by kid

A kid pin wins over a system pin, which wins over the key type's default.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from hub.errors import ConfigError
from hub.files import PUBLIC_FILE, private_dir, write_atomic
from hub.signing.algorithms import ALGORITHMS

FILENAME = "pins.toml"
_HEADER = (
    "# Algorithm pins: a kid or a system id -> the JOSE algorithm its signatures use.\n"
    "# Without a pin a key uses its type's default (EC P-256 ES256, RSA RS256, Ed25519 EdDSA).\n"
)


def read_pins(directory: Path) -> dict[str, str]:
    path = directory / FILENAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return {}
    try:
        doc = tomllib.loads(raw.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix or remove it") from None
    pins: dict[str, str] = {}
    for name, alg in doc.items():
        if not isinstance(alg, str) or alg not in ALGORITHMS:
            raise ConfigError(
                f"{path}: pin {name!r} = {alg!r} is not an algorithm; use one of "
                f"{', '.join(ALGORITHMS)}",
                field=name,
            )
        pins[name] = alg
    return pins


def set_pin(directory: Path, name: str, alg: str | None) -> None:
    """Pin ``name`` (kid or system id) to ``alg``, or drop its pin when ``alg`` is None. A new
    pin is appended so that comments in the file survive; a changed one rewrites the file."""
    pins = read_pins(directory)
    if pins.get(name) == alg:
        return
    path = directory / FILENAME
    private_dir(directory)
    if alg is not None and name not in pins:
        text = path.read_text() if path.exists() else _HEADER
        if not text.endswith("\n"):
            text += "\n"
        _write_atomic(path, text + _line(name, alg))
        return
    if alg is None:
        del pins[name]
    else:
        pins[name] = alg
    _write_atomic(path, _HEADER + "".join(_line(k, v) for k, v in sorted(pins.items())))


def _line(name: str, alg: str) -> str:
    # Kids and system ids are ASCII, so a JSON string is also a TOML basic string.
    return f"{json.dumps(name)} = {json.dumps(alg)}\n"


def _write_atomic(path: Path, text: str) -> None:
    write_atomic(path, text.encode(), PUBLIC_FILE)
