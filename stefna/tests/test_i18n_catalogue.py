"""Every template string is marked for translation, and the Indonesian catalogue is whole.

- Templates: each template is tokenised with Django's own lexer; tags, variables and
  translated regions become placeholders, and the HTML that is left is read for text a
  person sees (text nodes and the alt/title/placeholder/aria-label/… attributes). Any
  word left there is English nobody can translate. A short allowlist holds names and
  technical tokens that are the same in every language.
- Catalogue: every message in locale/id/LC_MESSAGES/*.po is translated and none is
  fuzzy; the compiled .mo holds exactly the .po's translations; and the strings the code
  marks today (collected by makemessages, run on a copy of the project) are all in it.
"""

from __future__ import annotations

import gettext
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from django.conf import settings
from django.template.base import Lexer, TokenType

BASE = Path(settings.BASE_DIR)
TEMPLATE_DIRS = [BASE / "templates"]
LOCALE = BASE / "locale" / "id" / "LC_MESSAGES"
DOMAINS = ["django", "djangojs"]

HOLE = "\u2063"  # where a tag, a variable or a translated region was
# The same in every language: names, formats and symbols.
ALLOWLIST = {
    "Stefna",
    "API",
    "FAL_KEY",
    "Google",
    "JPEG",
    "PNG",
    "WebP",
    "HEIC",
    "GitHub",
    "OpenAPI",
    "htmx",
    "you@example.com",
    "Bahasa Indonesia",
    "English",
    "UTC",
    "EN",
    "ID",
}
# The operators' dashboard stays English for now: its figures are read alongside logs,
# metrics and runbooks that are English (README design notes).
NOT_CHECKED = {BASE / "templates" / "admin" / "dashboard.html"}
VISIBLE_ATTRIBUTES = {
    "alt",
    "title",
    "placeholder",
    "aria-label",
    "aria-description",
    "aria-roledescription",
    "label",
    "hx-confirm",
}
META_WITH_TEXT = {"description", "og:title", "og:description", "og:image:alt", "twitter:title", "twitter:description"}


def _templates() -> list[Path]:
    return sorted(path for folder in TEMPLATE_DIRS for path in folder.rglob("*.html") if path not in NOT_CHECKED)


def _without_marked_text(source: str) -> str:
    """The template with every tag/variable a hole, translated regions and comments removed."""
    parts: list[str] = []
    depth = {"blocktranslate": 0, "comment": 0, "verbatim": 0}
    openers = {"blocktranslate": "blocktranslate", "blocktrans": "blocktranslate", "comment": "comment"}
    closers = {"endblocktranslate": "blocktranslate", "endblocktrans": "blocktranslate", "endcomment": "comment"}
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents.split() else ""
            if name in openers:
                depth[openers[name]] += 1
            elif name in closers:
                depth[closers[name]] -= 1
            parts.append(HOLE)
        elif token.token_type in (TokenType.VAR, TokenType.COMMENT):
            parts.append(HOLE)
        elif depth["blocktranslate"] or depth["comment"]:
            parts.append(HOLE)
        else:
            parts.append(token.contents)
    return "".join(parts)


class VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style", "code", "pre", "svg"):
            self._skip += 1
        values = {name: value or "" for name, value in attrs}
        for name, value in values.items():
            if name in VISIBLE_ATTRIBUTES or name.startswith("data-share-") and name != "data-share-url":
                self.found.append(value)
        if tag == "meta" and (values.get("name") in META_WITH_TEXT or values.get("property") in META_WITH_TEXT):
            self.found.append(values.get("content", ""))
        if tag == "input" and values.get("type") in ("submit", "button"):
            self.found.append(values.get("value", ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "code", "pre", "svg") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.found.append(data)


def untranslated_text(source: str) -> list[str]:
    parser = VisibleText()
    parser.feed(_without_marked_text(source))
    problems = []
    for text in parser.found:
        for piece in text.split(HOLE):
            piece = " ".join(piece.split())
            if piece in ALLOWLIST:
                continue
            words = [word for word in re.findall(r"[^\W\d_][\w'’-]*", piece) if word not in ALLOWLIST]
            if any(len(word) > 1 for word in words):
                problems.append(piece)
    return problems


def test_the_checker_flags_unmarked_text_and_accepts_marked_text():
    assert untranslated_text("<p>Hello there</p>") == ["Hello there"]
    assert untranslated_text('<img alt="A cat" src="x.png">') == ["A cat"]
    assert untranslated_text('<input type="submit" value="Send">') == ["Send"]
    assert untranslated_text("<p>{{ name }} by {{ author }}</p>") == ["by"]
    marked = (
        '{% load i18n %}<p>{% translate "Hello" %}</p><img alt="{% translate \'A cat\' %}">'
        "{% blocktranslate %}by {{ author }}{% endblocktranslate %}<script>var x = 'code';</script>"
        "{# a note #}{% comment %}Notes{% endcomment %}<p>Stefna · API</p><p>{{ count }} / 5</p>"
    )
    assert untranslated_text(marked) == []


@pytest.mark.parametrize("template", _templates(), ids=lambda path: str(path.relative_to(BASE)))
def test_every_template_string_is_marked_for_translation(template):
    assert untranslated_text(template.read_text()) == [], f"wrap these in {{% translate %}} in {template.name}"


# --- the catalogue -----------------------------------------------------------------------


def parse_po(path: Path) -> list[dict]:
    """A small .po reader: entries with msgctxt, msgid, msgid_plural, msgstr[...] and flags."""
    entries: list[dict] = []
    entry: dict = {"flags": set(), "msgstr": {}}
    field: tuple[str, int | None] | None = None

    def finish() -> None:
        nonlocal entry
        if "msgid" in entry:
            entries.append(entry)
        entry = {"flags": set(), "msgstr": {}}

    for raw in path.read_text(encoding="utf-8").splitlines() + [""]:
        line = raw.strip()
        if not line:
            finish()
            field = None
            continue
        if line.startswith("#,"):
            entry["flags"].update(flag.strip() for flag in line[2:].split(","))
            continue
        if line.startswith("#"):
            continue
        match = re.match(r'(msgctxt|msgid_plural|msgid|msgstr)(?:\[(\d+)\])?\s+"(.*)"$', line)
        if match:
            if match.group(1) == "msgctxt" and "msgid" in entry:
                finish()
            name, index, text = match.group(1), match.group(2), match.group(3)
            field = (name, int(index) if index is not None else None)
            if name == "msgstr":
                entry["msgstr"][field[1] or 0] = text
            else:
                entry[name] = text
            continue
        if line.startswith('"') and field:
            text = line[1:-1]
            name, index = field
            if name == "msgstr":
                entry["msgstr"][index or 0] += text
            else:
                entry[name] += text
    return entries


def _unescape(text: str) -> str:
    return text.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in text else text


def _catalogues() -> list[Path]:
    return [LOCALE / f"{domain}.po" for domain in DOMAINS if (LOCALE / f"{domain}.po").exists()]


def test_the_indonesian_catalogue_exists():
    assert (LOCALE / "django.po").exists()


@pytest.mark.parametrize("po", _catalogues(), ids=lambda path: path.name)
def test_every_message_is_translated_and_none_is_fuzzy(po):
    entries = [entry for entry in parse_po(po) if entry["msgid"]]
    assert entries, "an empty catalogue"
    fuzzy = [entry["msgid"] for entry in entries if "fuzzy" in entry["flags"]]
    untranslated = [entry["msgid"] for entry in entries if not all(entry["msgstr"].values())]
    plural_gaps = [entry["msgid"] for entry in entries if "msgid_plural" in entry and not entry["msgstr"]]
    assert fuzzy == [], "fuzzy translations (check them, then remove the flag)"
    assert untranslated == [], "messages without an Indonesian translation"
    assert plural_gaps == []
    # Placeholders survive translation: an unknown one raises at run time, a lost one loses
    # a figure. (With plurals, a translation may use either form's own placeholders.)
    for entry in entries:
        singular = set(re.findall(r"%\(\w+\)[sd]", entry["msgid"]))
        plural = set(re.findall(r"%\(\w+\)[sd]", entry.get("msgid_plural", ""))) if "msgid_plural" in entry else None
        required, allowed = (singular & plural, singular | plural) if plural is not None else (singular, singular)
        for text in entry["msgstr"].values():
            found = set(re.findall(r"%\(\w+\)[sd]", text))
            assert required <= found <= allowed, (entry["msgid"], found)


@pytest.mark.parametrize("po", _catalogues(), ids=lambda path: path.name)
def test_the_compiled_catalogue_matches_the_po(po):
    mo = po.with_suffix(".mo")
    assert mo.exists(), "run `make messages`"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)._catalog  # type: ignore[attr-defined]
    for entry in parse_po(po):
        if not entry["msgid"] or "fuzzy" in entry["flags"]:
            continue
        key = _unescape(entry["msgid"])
        if "msgctxt" in entry:
            key = f"{_unescape(entry['msgctxt'])}\x04{key}"
        if "msgid_plural" in entry:
            for index, text in entry["msgstr"].items():
                assert compiled.get((key, index)) == _unescape(text), f"stale .mo: run `make messages` ({key!r})"
        else:
            assert compiled.get(key) == _unescape(entry["msgstr"][0]), f"stale .mo: run `make messages` ({key!r})"


@pytest.mark.skipif(not shutil.which("xgettext"), reason="needs GNU gettext (make installs it)")
def test_the_catalogue_holds_every_string_the_code_marks(tmp_path):
    """makemessages on a copy of the project: nothing it finds may be missing from the .po."""
    copy = tmp_path / "project"
    ignore = shutil.ignore_patterns(
        ".venv", ".git", "node_modules", "media", "staticfiles", "docs", "bench", "__pycache__", "*.sqlite3*", "*.png"
    )
    shutil.copytree(BASE, copy, ignore=ignore)
    command = [
        sys.executable,
        "manage.py",
        "makemessages",
        "-l",
        "id",
        "-d",
        "django",
        "--no-obsolete",
        "--ignore=tests/*",
        "--ignore=*/tests/*",
    ]
    js_command = [
        *command[:5],
        "-d",
        "djangojs",
        "--no-obsolete",
        "--ignore=staticfiles/*",
        "--ignore=tests/*",
        "--ignore=static/js/htmx.min.js",
    ]
    for cmd in (command, js_command):
        subprocess.run(
            cmd,
            cwd=copy,
            check=True,
            capture_output=True,
            env={"SECRET_KEY": "catalogue-check", "PATH": "/usr/bin:/bin"},
        )
    for domain in DOMAINS:
        fresh_po = copy / "locale" / "id" / "LC_MESSAGES" / f"{domain}.po"
        if not fresh_po.exists():
            continue
        ours = (
            {(entry.get("msgctxt"), entry["msgid"]) for entry in parse_po(LOCALE / f"{domain}.po")}
            if (LOCALE / f"{domain}.po").exists()
            else set()
        )
        fresh = parse_po(fresh_po)
        missing = [
            entry["msgid"] for entry in fresh if entry["msgid"] and (entry.get("msgctxt"), entry["msgid"]) not in ours
        ]
        assert missing == [], f"new strings: run `make makemessages`, translate them in {domain}.po"
        new_untranslated = [entry["msgid"] for entry in fresh if entry["msgid"] and not all(entry["msgstr"].values())]
        assert new_untranslated == [], f"untranslated after merging into {domain}.po"
