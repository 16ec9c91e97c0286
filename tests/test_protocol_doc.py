"""docs/protocol.md and aitrados.bus.protocol must say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

from aitrados.bus import protocol as P

DOC = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()


def test_documented_version_matches_code() -> None:
    m = re.search(r"Protocol version: \*\*(\d+)\*\*", DOC)
    assert m and int(m.group(1)) == P.PROTOCOL_VERSION


def test_command_bytes_match() -> None:
    table = dict(re.findall(r"\| `0x([0-9a-f]{2})` \| ([A-Z]+) \|", DOC))
    assert {int(k, 16).to_bytes(1, "big"): v for k, v in table.items()} == P.COMMAND_NAMES


def test_tags_and_meta_layout_match() -> None:
    assert f"`{P.CLIENT_TAG.decode()}`" in DOC and f"`{P.WORKER_TAG.decode()}`" in DOC
    assert f"meta: {P.META.size} bytes" in DOC and P.META.format == ">B8sQ"


def test_topic_table_matches_the_event_vocabulary() -> None:
    """Every kind of aitrados.events is in §4.1's table, and each documented shape is what
    build_topic makes and parse_topic reads back (a dotted symbol included)."""
    from aitrados.events import Kind, Topic, build_topic, parse_topic

    rows = dict(re.findall(r"^\| `(\w+)` \| `([^`]+)` \|", DOC, flags=re.M))
    assert set(rows) == {k.value for k in Kind}
    subject = {"full_symbol": "STOCK:US:BRK.B", "group": "us_index", "country": "US"}
    detail = {"interval": "DAY", "event_code": "CPI", "status": "filled", "module": "price_action"}
    for kind, shape in rows.items():
        names = re.findall(r"<(\w+)>", shape)
        s = next((subject[n] for n in names if n in subject), "")
        d = next((detail[n] for n in names if n in detail), "")
        topic = re.sub(r"<(\w+)>", lambda m: {**subject, **detail}[m.group(1)], shape)
        assert build_topic(kind, s, d) == topic, kind
        assert parse_topic(topic) == Topic(Kind(kind), s, d), kind
