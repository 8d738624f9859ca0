"""What the model and the engineer see of a tool result's content items (MCP ``content`` list).

Django-free (the agent uses it). A tool result is a list of MCP content items: ``text``,
``image`` / ``audio`` (base64 ``data`` with a ``mimeType``), ``resource_link`` (a URI and a name)
and ``resource`` (an embedded resource with ``text`` or a base64 ``blob``). Every field of an item
came from a remote server and is hostile: nothing here trusts a declared type or size, and no URI
or data is ever rendered as-is — the page shows images through netops' own view
(:mod:`chat.views`), only for the raster types below, and links only for http(s).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

# Raster types a browser decodes without running anything; SVG (script) and HTML never.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
# Decoded bytes of one image the model or the page is given; a bigger one is refused with a note.
IMAGE_MAX_BYTES = 4 * 1024 * 1024
# How many images of one round go to a model that accepts images (the rest are described).
MODEL_IMAGES_PER_ROUND = 8
_LABEL_CHARS = 200

# The first bytes of each allowed type: an item whose data does not start like its declared type
# is not served or sent (a "PNG" that is an HTML page stays text).
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),
}


def _short(value: Any, limit: int = _LABEL_CHARS) -> str:
    text = " ".join(str(value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _resource(item: dict[str, Any]) -> dict[str, Any]:
    resource = item.get("resource")
    return resource if isinstance(resource, dict) else {}


def human_size(size: int) -> str:
    """``14 KB``-style sizes (1 KB = 1024 bytes), for descriptions and cards."""
    if size < 1024:
        return f"{size} B"
    if size < 1024 * 1024:
        return f"{round(size / 1024)} KB"
    return f"{size / (1024 * 1024):.1f} MB"


def encoded_size(data: Any) -> int:
    """The decoded size of base64 ``data`` without decoding it (0 for anything but a string)."""
    if not isinstance(data, str):
        return 0
    stripped = data.rstrip("=")
    return len(stripped) * 3 // 4


def decode_image(item: dict[str, Any], *, max_bytes: int = IMAGE_MAX_BYTES) -> tuple[str, bytes] | str:
    """``(mime type, bytes)`` of an image item fit to show or send, else the reason it is not."""
    mime = str(item.get("mimeType") or "").lower().split(";")[0].strip()
    if mime not in IMAGE_TYPES:
        return f"images of type {_short(mime, 60) or 'unknown'} are not shown (only PNG, JPEG, GIF, WebP)"
    size = encoded_size(item.get("data"))
    if size > max_bytes:
        return f"the image is too large to show ({human_size(size)}; the limit is {human_size(max_bytes)})"
    try:
        raw = base64.b64decode(str(item.get("data") or ""), validate=True)
    except (binascii.Error, ValueError):
        return "the image data is not valid base64"
    if not raw or not raw.startswith(_MAGIC[mime]) or (mime == "image/webp" and raw[8:12] != b"WEBP"):
        return f"the image data is not a {mime} image"
    return mime, raw


def describe(item: dict[str, Any]) -> str:
    """One content item in words for a model (or a transcript): text as it is, the rest described."""
    kind = item.get("type")
    if kind == "text":
        return str(item.get("text", ""))
    if kind in ("image", "audio"):
        mime = _short(item.get("mimeType") or "unknown type", 60)
        return f"[{kind}: {mime}, {human_size(encoded_size(item.get('data')))}]"
    if kind == "resource_link":
        name = _short(item.get("title") or item.get("name") or "")
        uri = _short(item.get("uri"), 500)
        return f"[resource link: {name} <{uri}>]" if name else f"[resource link: <{uri}>]"
    if kind == "resource":
        resource = _resource(item)
        uri = _short(resource.get("uri"), 500)
        if isinstance(resource.get("text"), str):
            return f"[resource {uri}]\n{resource['text']}"
        mime = _short(resource.get("mimeType") or "unknown type", 60)
        return f"[resource {uri}: {mime}, {human_size(encoded_size(resource.get('blob')))}]"
    return f"[{_short(kind, 40) or 'unknown'} content]"


def text_for_model(content: list[dict[str, Any]], *, attached: int = 0) -> str:
    """The result's items as one text; ``attached`` images (the first ones) go along as image parts."""
    parts: list[str] = []
    images = 0
    for item in content:
        line = describe(item)
        if item.get("type") == "image":
            images += 1
            if images <= attached:
                line += " (attached below)"
        parts.append(line)
    return "\n".join(parts)


def model_images(content: list[dict[str, Any]], *, limit: int) -> list[str]:
    """``data:`` URLs of the result's images fit for a model's image input (at most ``limit``)."""
    urls: list[str] = []
    for item in content:
        if len(urls) >= limit:
            break
        if item.get("type") != "image":
            continue
        decoded = decode_image(item)
        if isinstance(decoded, tuple):
            mime, raw = decoded
            urls.append(f"data:{mime};base64,{base64.b64encode(raw).decode('ascii')}")
    return urls


@dataclass(frozen=True)
class CardItem:
    """One non-text item as a tool card shows it (text items are the card's result text)."""

    kind: Literal["image", "link", "note"]
    index: int  # position in the content list (the image view's address)
    label: str
    href: str = ""  # a link's http(s) URI; empty: show ``label`` as text
    note: str = ""  # why an image is not shown


def card_items(content: list[dict[str, Any]]) -> list[CardItem]:
    """The non-text items of a result for its card: images to show, links, descriptions."""
    items: list[CardItem] = []
    for index, item in enumerate(content):
        kind = item.get("type")
        if kind == "text":
            continue
        if kind == "image":
            decoded = decode_image(item)
            label = describe(item)
            if isinstance(decoded, tuple):
                items.append(CardItem("image", index, label))
            else:
                items.append(CardItem("note", index, label, note=decoded))
        elif kind == "resource_link":
            uri = str(item.get("uri") or "")
            name = _short(item.get("title") or item.get("name") or uri)
            scheme = urlsplit(uri).scheme.lower() if len(uri) <= 2000 else ""
            href = uri if scheme in ("http", "https") and urlsplit(uri).netloc else ""
            items.append(CardItem("link", index, name, href=href, note="" if href else _short(uri, 500)))
        elif kind == "resource" and isinstance(_resource(item).get("text"), str):
            continue  # embedded text: part of the result text (see :func:`result_text`)
        else:
            items.append(CardItem("note", index, describe(item)))
    return items


def result_text(content: list[dict[str, Any]]) -> str:
    """The text a card shows: text items and embedded text resources, in order."""
    parts: list[str] = []
    for item in content:
        if item.get("type") == "text":
            parts.append(str(item.get("text", "")))
        elif item.get("type") == "resource" and isinstance(_resource(item).get("text"), str):
            parts.append(describe(item))
    return "\n".join(parts)
