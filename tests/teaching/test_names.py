"""When two action names are one action: the server's rule, and the page's copy of its table."""

from __future__ import annotations

import re
from pathlib import Path

import actionrec.serve
from actionrec.teaching.names import LOOK_ALIKES, name_key


def test_names_are_compared_after_nfkc_case_folding_and_look_alikes():
    assert len({name_key(name) for name in ("walk", "WALK", "wаlk", "ｗａｌｋ", " walk ")}) == 1
    assert name_key("Straße") == name_key("STRASSE")
    assert name_key("walk") != name_key("talk")


def test_the_page_compares_names_by_the_servers_look_alike_table():
    script = (Path(actionrec.serve.__file__).parent / "web" / "teach.js").read_text(encoding="utf-8")
    alikes, latin = (re.search(rf'const {name} = "([^"]*)";', script).group(1) for name in ("LOOK_ALIKES", "LATIN"))
    assert dict(zip(alikes, latin, strict=True)) == {chr(code): letter for code, letter in LOOK_ALIKES.items()}
