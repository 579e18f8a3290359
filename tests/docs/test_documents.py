"""The documents in docs/ agree with the code they describe."""

from __future__ import annotations

import json
import re
from pathlib import Path

from parley.config import Settings
from parley.server.app import create_app

DOCS = Path(__file__).parents[2] / "docs"
PARLEY = Path(__file__).parents[2] / "parley"


def test_the_published_openapi_is_the_one_the_server_serves():
    """docs/openapi.json is regenerated with `parley openapi` when the API changes."""
    served = create_app(Settings()).openapi()
    published = json.loads((DOCS / "openapi.json").read_text())
    assert published == served


def test_every_error_code_the_code_can_give_is_documented():
    """Each stable code raised in parley/ has a row in docs/api.md."""
    raised = set()
    for source in PARLEY.rglob("*.py"):
        text = source.read_text()
        raised |= set(
            re.findall(
                r"(?:BadRequest|Unauthorized|Forbidden|NotFound|Conflict|PayloadTooLarge|"
                r'UnprocessableImage|Unavailable|ParleyError)\(\s*"([a-z_]+)"',
                text,
            )
        )
    documented = set(
        re.findall(r"^\| `([a-z_]+)` \|", (DOCS / "api.md").read_text(), re.M)
    )
    assert raised - documented == set()
