"""Validation and parsing of Telegram's HTML ``parse_mode`` into plain text and entities.

Only what the Bot API documents is accepted: the formatting tags listed in
``TAG_RULES`` with their documented attributes, and the entities ``&lt;``
``&gt;`` ``&amp;`` ``&quot;`` plus numeric ones. Anything else raises
:class:`ParseError`, whose message is the detail Telegram puts after
``Bad Request: can't parse entities:``. Entity offsets and lengths are in UTF-16
code units, like the Bot API's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NAMED_ENTITIES = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}

_TEXT_RUN = re.compile(r"[^<&]+")
_ENTITY = re.compile(r"&(#[0-9]{1,8}|#[xX][0-9a-fA-F]{1,7}|[a-zA-Z][a-zA-Z0-9]{0,31});")
_TAG = re.compile(
    r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)"
    r"((?:\s+[a-zA-Z_][a-zA-Z0-9_-]*(?:\s*=\s*(?:\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?)*)\s*>"
)
_ATTRIBUTE = re.compile(r"([a-zA-Z_][a-zA-Z0-9_-]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'>]+))?")
_LANGUAGE_CLASS = re.compile(r"language-([A-Za-z0-9_+#.-]+)")


class ParseError(ValueError):
    """Text is not valid Telegram HTML; ``str(exc)`` is the human-readable detail."""


def utf16_len(text: str) -> int:
    """Return the length of ``text`` in UTF-16 code units, the Bot API's unit."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _OpenTag:
    """A start tag waiting for its end tag, with the entity data gathered so far."""

    name: str
    offset: int
    byte_offset: int
    attributes: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)


EntityBuilder = Callable[[_OpenTag], dict[str, Any] | None]


def _simple(kind: str) -> EntityBuilder:
    """Return a builder that always produces an entity of ``kind``."""
    return lambda tag: {"type": kind}


def _span_entity(tag: _OpenTag) -> dict[str, Any]:
    """Build a spoiler from ``<span class="tg-spoiler">``; other classes are errors."""
    if tag.attributes.get("class") != "tg-spoiler":
        raise ParseError(
            f'Tag "span" must have class "tg-spoiler" at byte offset {tag.byte_offset}'
        )
    return {"type": "spoiler"}


def _link_entity(tag: _OpenTag) -> dict[str, Any] | None:
    """Build a text_link from ``<a href>``; an anchor without href formats nothing."""
    href = tag.attributes.get("href", "").strip()
    return {"type": "text_link", "url": href} if href else None


def _code_entity(tag: _OpenTag) -> dict[str, Any] | None:
    """Build inline code; ``<code>`` directly inside ``<pre>`` only sets the pre's language."""
    if tag.extra.get("inside_pre"):
        return None
    return {"type": "code"}


def _pre_entity(tag: _OpenTag) -> dict[str, Any]:
    """Build a pre block, with the language taken from an inner ``<code class>``."""
    entity: dict[str, Any] = {"type": "pre"}
    if tag.extra.get("language"):
        entity["language"] = tag.extra["language"]
    return entity


def _blockquote_entity(tag: _OpenTag) -> dict[str, Any]:
    """Build a blockquote, expandable when the boolean attribute is present."""
    expandable = "expandable" in tag.attributes
    return {"type": "expandable_blockquote" if expandable else "blockquote"}


def _emoji_entity(tag: _OpenTag) -> dict[str, Any]:
    """Build a custom_emoji from ``<tg-emoji emoji-id>``, which is mandatory."""
    emoji_id = tag.attributes.get("emoji-id", "")
    if not emoji_id.isdigit():
        raise ParseError(
            f'Tag "tg-emoji" must have a numeric "emoji-id" at byte offset {tag.byte_offset}'
        )
    return {"type": "custom_emoji", "custom_emoji_id": emoji_id}


@dataclass(frozen=True)
class TagRule:
    """What a supported tag turns into and which attributes it may carry."""

    build: EntityBuilder
    attributes: frozenset[str] = frozenset()


TAG_RULES: dict[str, TagRule] = {
    "b": TagRule(_simple("bold")),
    "strong": TagRule(_simple("bold")),
    "i": TagRule(_simple("italic")),
    "em": TagRule(_simple("italic")),
    "u": TagRule(_simple("underline")),
    "ins": TagRule(_simple("underline")),
    "s": TagRule(_simple("strikethrough")),
    "strike": TagRule(_simple("strikethrough")),
    "del": TagRule(_simple("strikethrough")),
    "tg-spoiler": TagRule(_simple("spoiler")),
    "span": TagRule(_span_entity, frozenset({"class"})),
    "a": TagRule(_link_entity, frozenset({"href"})),
    "code": TagRule(_code_entity, frozenset({"class"})),
    "pre": TagRule(_pre_entity),
    "blockquote": TagRule(_blockquote_entity, frozenset({"expandable"})),
    "tg-emoji": TagRule(_emoji_entity, frozenset({"emoji-id"})),
}


def decode_entity(match: re.Match[str], byte_offset: int) -> str:
    """Return the character an HTML entity stands for, or raise ParseError."""
    body = match.group(1)
    if not body.startswith("#"):
        if body not in NAMED_ENTITIES:
            raise ParseError(f'Unsupported HTML entity "&{body};" at byte offset {byte_offset}')
        return NAMED_ENTITIES[body]
    code = int(body[2:], 16) if body[1:2] in ("x", "X") else int(body[1:])
    if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise ParseError(f"Invalid numeric HTML entity at byte offset {byte_offset}")
    return chr(code)


def _decode_attribute(raw: str | None, byte_offset: int) -> str:
    """Unquote an attribute value and decode the entities inside it."""
    if raw is None:
        return ""
    if raw[:1] in ('"', "'"):
        raw = raw[1:-1]
    return _ENTITY.sub(lambda m: decode_entity(m, byte_offset), raw)


class _HtmlParser:
    """Single-pass parser producing plain text and UTF-16 based entities."""

    def __init__(self, source: str) -> None:
        self.src = source
        self.pos = 0
        self.pieces: list[str] = []
        self.offset = 0
        self.stack: list[_OpenTag] = []
        self.entities: list[dict[str, Any]] = []

    def parse(self) -> tuple[str, list[dict[str, Any]]]:
        """Consume the whole source and return (plain_text, entities)."""
        while self.pos < len(self.src):
            run = _TEXT_RUN.match(self.src, self.pos)
            if run:
                self._emit(run.group())
                self.pos = run.end()
            elif self.src[self.pos] == "&":
                self._entity()
            else:
                self._tag()
        if self.stack:
            tag = self.stack[-1]
            raise ParseError(
                f'Can\'t find end tag corresponding to start tag "{tag.name}" '
                f"at byte offset {tag.byte_offset}"
            )
        self.entities.sort(key=lambda e: (e["offset"], -e["length"]))
        return "".join(self.pieces), self.entities

    def _byte_offset(self) -> int:
        """Return the current position as a UTF-8 byte offset, as Telegram reports it."""
        return len(self.src[: self.pos].encode("utf-8"))

    def _emit(self, text: str) -> None:
        """Append plain text and advance the UTF-16 offset."""
        self.pieces.append(text)
        self.offset += utf16_len(text)

    def _entity(self) -> None:
        """Decode an HTML entity at the current position."""
        match = _ENTITY.match(self.src, self.pos)
        if not match:
            raise ParseError(
                f"Character '&' at byte offset {self._byte_offset()} must be escaped as &amp;"
            )
        self._emit(decode_entity(match, self._byte_offset()))
        self.pos = match.end()

    def _tag(self) -> None:
        """Parse a start or end tag at the current position."""
        match = _TAG.match(self.src, self.pos)
        if not match:
            where = self._byte_offset()
            if self.src.find(">", self.pos) == -1:
                raise ParseError(f"Can't find end of the tag starting at byte offset {where}")
            raise ParseError(f"Character '<' at byte offset {where} must be escaped as &lt;")
        closing, name, attributes = match.group(1), match.group(2).lower(), match.group(3)
        if closing:
            self._close(name, attributes)
        else:
            self._open(name, attributes)
        self.pos = match.end()

    def _open(self, name: str, raw_attributes: str) -> None:
        """Push a supported start tag, validating its attributes."""
        where = self._byte_offset()
        rule = TAG_RULES.get(name)
        if rule is None:
            raise ParseError(f'Unsupported start tag "{name}" at byte offset {where}')
        attributes: dict[str, str] = {}
        for attr in _ATTRIBUTE.finditer(raw_attributes):
            attr_name = attr.group(1).lower()
            if attr_name not in rule.attributes:
                raise ParseError(
                    f'Unsupported attribute "{attr_name}" of tag "{name}" at byte offset {where}'
                )
            attributes[attr_name] = _decode_attribute(attr.group(2), where)
        tag = _OpenTag(name, self.offset, where, attributes)
        if name == "code" and self.stack and self.stack[-1].name == "pre":
            tag.extra["inside_pre"] = True
            language = _LANGUAGE_CLASS.fullmatch(attributes.get("class", ""))
            if language:
                self.stack[-1].extra["language"] = language.group(1)
        self.stack.append(tag)

    def _close(self, name: str, raw_attributes: str) -> None:
        """Pop the matching start tag and record its entity."""
        where = self._byte_offset()
        if raw_attributes.strip():
            raise ParseError(f'End tag "{name}" can\'t have attributes at byte offset {where}')
        if not self.stack:
            raise ParseError(f'Unexpected end tag "{name}" at byte offset {where}')
        tag = self.stack[-1]
        if tag.name != name:
            raise ParseError(
                f'Unmatched end tag at byte offset {where}, expected "</{tag.name}>", '
                f'found "</{name}>"'
            )
        self.stack.pop()
        entity = TAG_RULES[name].build(tag)
        length = self.offset - tag.offset
        if entity is not None and length > 0:
            self.entities.append(
                {"type": entity.pop("type"), "offset": tag.offset, "length": length, **entity}
            )


def parse_html(source: str) -> tuple[str, list[dict[str, Any]]]:
    """Parse Telegram HTML into (plain_text, entities) or raise :class:`ParseError`."""
    return _HtmlParser(source).parse()


def strip_text(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Trim surrounding whitespace like Telegram does, clipping entities to what remains."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead = utf16_len(text) - utf16_len(text.lstrip())
    total = utf16_len(stripped)
    clipped: list[dict[str, Any]] = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        end = min(entity["offset"] + entity["length"] - lead, total)
        if end > start:
            clipped.append({**entity, "offset": start, "length": end - start})
    return stripped, clipped
