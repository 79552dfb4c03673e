"""The documentation site's generated page is current, and README links only to pages that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_http_api_page_is_what_the_app_publishes():
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from actionrec.serve.apidoc import markdown

    assert (ROOT / "docs" / "http-api.md").read_text() == markdown(), (
        "docs/http-api.md is out of date: python -m actionrec.serve.apidoc > docs/http-api.md")


def test_every_reason_in_the_code_is_in_the_reference():
    from actionrec.serve.apidoc import REASONS

    documented = {code for code, _, _ in REASONS}
    code = "\n".join(path.read_text() for path in (ROOT / "src" / "actionrec").rglob("*.py"))
    used = set(re.findall(r'reason = "([a-z_]+)"', code))
    used |= set(re.findall(r'(?:Error|RequestError)\(\d{3},[^;]*?"([a-z]+(?:_[a-z]+)+)"[,)]', code, re.S))
    missing = used - documented
    assert missing == set(), f"reasons missing from docs (actionrec.serve.apidoc.REASONS): {missing}"


def test_readme_links_into_the_site_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 220
    for target in re.findall(r"\]\((docs/[^)#]+)", readme):
        assert (ROOT / target).is_file(), target
