"""`aitrados run` flags that choose the dashboard's port."""

from __future__ import annotations

import pytest

from aitrados.cli import build_parser, dashboard_port


@pytest.mark.parametrize("argv,port", [(["run"], None), (["run", "--dashboard"], 8780), (["run", "--dashboard", "9001"], 9001),
                                       (["run", "--serve"], 8780), (["run", "--serve", "--no-dashboard"], None),
                                       (["run", "--serve", "--dashboard", "0"], 0)])
def test_run_flags_choose_the_dashboard_port(argv: list[str], port: int | None) -> None:
    parser, _ = build_parser()
    assert dashboard_port(parser.parse_args(argv)) == port
