"""Model output to safe HTML: Markdown rendered with raw HTML disabled, then sanitised by nh3.

LLM output is untrusted. markdown-it never passes raw HTML through (``html=False``), and nh3
(ammonia) keeps only the tags and attributes that Markdown produces, with http/https/mailto links
only, so ``<script>``, event handlers and ``javascript:`` URLs cannot reach the page.
"""

from __future__ import annotations

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])

_TAGS = {
    "p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre",
    "blockquote", "ul", "ol", "li", "a", "table", "thead", "tbody", "tr", "th", "td", "img",
}  # fmt: skip
_ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "code": {"class"},
    "th": {"style"},
    "td": {"style"},
    "ol": {"start"},
}


def render_markdown(text: str) -> SafeString:
    """Render ``text`` (Markdown from the model) to sanitised HTML that is safe to insert as-is."""
    html = _markdown.render(text)
    clean = nh3.clean(
        html,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        filter_style_properties={"text-align"},
    )
    return mark_safe(clean)  # noqa: S308  (sanitised by nh3 just above)
