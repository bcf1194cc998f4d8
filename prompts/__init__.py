"""Prompt templates: plain data files rendered with strict substitution.

Templates are `prompts/<name>.txt`, written with `$name` placeholders; rendering refuses a
missing or unknown variable. Untrusted article text only ever goes inside the delimited slot
made by `article_slot`, with the delimiters escaped where the article itself contains them.
This package imports nothing else of the project.
"""

from __future__ import annotations

import string
from functools import cache
from pathlib import Path

_DIR = Path(__file__).parent
OPEN = "<<<ARTICLE"
CLOSE = "ARTICLE>>>"


@cache
def _template(name: str) -> string.Template:
    path = _DIR / f"{name}.txt"
    if not path.is_file():
        raise KeyError(f"no prompt template named {name!r} in {_DIR}")
    return string.Template(path.read_text(encoding="utf-8"))


def render(name: str, **variables: object) -> str:
    """Render template `name`; a missing or unused variable is an error, never a blank."""
    template = _template(name)
    wanted = set(template.get_identifiers())
    given = set(variables)
    if wanted - given:
        raise KeyError(f"prompt {name!r} needs {sorted(wanted - given)}")
    if given - wanted:
        raise KeyError(f"prompt {name!r} does not use {sorted(given - wanted)}")
    return template.substitute({k: str(v) for k, v in variables.items()})


def escape_slot(text: str) -> str:
    """Neutralise the slot delimiters inside untrusted text (`<<<` and `>>>` never survive)."""
    return text.replace("<<<", "‹‹‹").replace(">>>", "›››")


def article_slot(title: str, body: str) -> str:
    """The delimited block that carries one article's untrusted text."""
    return f"{OPEN}\nTitle: {escape_slot(title)}\n\n{escape_slot(body)}\n{CLOSE}"
