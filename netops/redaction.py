"""Masking secrets in text that came from elsewhere: exact, base64, URL-encoded and hex forms.

Why this exists: a remote party (an LLM endpoint, a tool server, a health probe) may echo what
netops sent it — ``Incorrect API key provided: sk-...``, ``token rejected: Bearer ...``, a 401 page
quoting the request headers, the same in base64 inside a JWT-ish blob — and netops would otherwise
store that text, show it, return it and log it. Every such text goes through :func:`sanitize`
(or a :class:`StreamRedactor` for streamed answers) before it is kept anywhere.

Which secrets: every value resolved through :func:`netops.secrets.resolve_secret` in this process
(:func:`register_secret_value`), netops' own configuration secrets registered at settings time
(:func:`register_configuration_secrets`), and the secrets of the entry the text came from, passed
in explicitly by the caller (another process may have resolved a secret this one never saw).

Secrets shorter than 6 characters are not tracked: masking them would mangle ordinary words and
numbers in every answer ("admin", "1234"), and a value that short is no secret worth the name.

Speed: all forms of all secrets are compiled into one RE2 alternation (google-re2, a DFA: linear
in the text, independent of the number of secrets); 1 MB of text against 50 secrets is scanned in
about 5-30 ms (ASCII / non-ASCII), see ``tests/security/test_remote_echoes.py``. Without RE2 the
same alternation is compiled by the stdlib as a trie (correct, but ~30x slower).

This module imports no Django, so the agent loop and the connection layer can use it.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
import threading
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

try:  # RE2 runs a large alternation of literals as one automaton: linear, ~5 ms per MB
    import re2
except ImportError:  # pragma: no cover - the stdlib fallback is correct, only slower
    re2 = None

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 6
# Secrets longer than this (certificates, PEM keys) are masked piece by piece; see _pieces().
PIECE_LENGTH = 128
_HEAD = 6  # how many leading characters of each form are kept in a set for the stream check

# Header schemes a secret is commonly sent with; their base64 forms are covered by the alignment
# variants below (the scheme shifts the secret by len(scheme) + 1 bytes), listed for the exact
# standalone encodings that also mask the scheme.
_SCHEMES = ("Bearer", "Basic", "Token", "Bot")

_lock = threading.Lock()
_process_secrets: set[str] = set()
_compiled: tuple[frozenset[str], Redactor] | None = None


# --- forms of one secret -------------------------------------------------------------------------


def _base64_cores(data: bytes) -> set[str]:
    """The base64 text of ``data`` at each of the three byte alignments, minus the edge characters
    that also depend on neighbouring bytes.

    A secret inside a longer base64 stream (``Bearer <secret>`` encoded whole, a JSON blob encoded
    whole) starts at an arbitrary byte offset, and base64 groups bytes in threes: the secret's own
    characters differ for offsets 0, 1 and 2 (mod 3). Encoding it behind 0, 1 or 2 filler bytes and
    cutting the characters the filler (or the unknown following byte) touched gives text that
    appears in *any* base64 stream containing the secret, whatever surrounds it.
    """
    cores: set[str] = set()
    for shift, head in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * shift + data).decode().rstrip("=")
        tail = 0 if (shift + len(data)) % 3 == 0 else 1
        core = encoded[head : len(encoded) - tail]
        if len(core) >= MIN_SECRET_LENGTH:
            cores.add(core)
    return cores


def secret_forms(value: str) -> set[str]:
    """Every text form in which ``value`` is masked (longest forms win when they overlap)."""
    data = value.encode()
    forms = {value, value.encode().hex(), value.encode().hex().upper()}
    for encoded in (quote(value, safe=""), quote(value), quote_plus(value)):
        forms.add(encoded)
        forms.add(re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded))
    forms.add(json.dumps(value)[1:-1])  # as it appears inside a JSON string
    forms |= {repr(value)[1:-1], repr(data)[2:-1]}  # as Python quotes it in exception texts
    standard: set[str] = set()
    for payload in (data, *(f"{scheme} {value}".encode() for scheme in _SCHEMES)):
        full = base64.b64encode(payload).decode()
        standard |= {full, full.rstrip("=")}
    standard |= _base64_cores(data)
    forms |= standard
    forms |= {form.replace("+", "-").replace("/", "_") for form in standard}  # urlsafe
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _trie_pattern(words: Iterable[str]) -> str:
    """A regex source matching any of ``words``, longest first, with shared prefixes factored out.

    Chains of single children are emitted as one literal, so nesting (and the recursion here)
    grows with the number of branch points, not with the length of a secret.
    """
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        literal = []
        while len(node) == 1 and "" not in node:
            ((char, node),) = node.items()
            literal.append(re.escape(char))
        head = "".join(literal)
        branches = [re.escape(char) + build(child) for char, child in sorted(node.items()) if char]
        if not branches:
            return head
        body = "(?:" + "|".join(branches) + ")"
        if "" in node:  # a word ends here and a longer one continues: the optional group is greedy
            body += "?"
        return head + body

    return build(trie)


def _pieces(value: str) -> list[str]:
    """``value`` itself, or for a long secret (a PEM file) overlapping pieces of ``PIECE_LENGTH``.

    Masking every piece masks the whole secret and any long part of it, while keeping the longest
    form (and so what a stream must hold back) bounded whatever the size of the secret.
    """
    if len(value) <= PIECE_LENGTH:
        return [value]
    starts = [*range(0, len(value) - PIECE_LENGTH, PIECE_LENGTH), len(value) - PIECE_LENGTH]
    return [value[start : start + PIECE_LENGTH] for start in starts]


def _compile(forms: set[str]) -> Any:
    if re2 is not None:
        options = re2.Options()
        options.longest_match = True  # at one position the longest form wins ("...==" over "...")
        options.max_mem = 256 << 20  # the default 8 MB is too small for hundreds of long literals
        return re2.compile(
            "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), options
        )
    return re.compile(_trie_pattern(forms))


class Redactor:
    """Replaces every form of a fixed set of secrets with ``[redacted]``; immutable and thread-safe."""

    def __init__(self, secrets: Iterable[str]):
        values = {s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH}
        forms: set[str] = set()
        for value in values:
            for piece in _pieces(value):
                forms |= secret_forms(piece)
        self.secrets = frozenset(values)
        self.max_form_length = max((len(f) for f in forms), default=0)
        self._pattern: Any = _compile(forms) if forms else None
        # For streams: the sorted forms and every form's first few characters answer "could a
        # secret start here?" for the tail of a buffer without a regex pass per position.
        self._sorted_forms = sorted(forms)
        self._heads = {form[:length] for form in forms for length in range(1, _HEAD + 1)}

    def __bool__(self) -> bool:
        return self._pattern is not None

    def _spans(self, text: str, end: int) -> Iterator[tuple[int, int]]:
        for match in self._pattern.finditer(text, 0, end):
            yield match.span()

    def redact(self, text: str) -> str:
        """``text`` with every occurrence of every form replaced."""
        if self._pattern is None or not text or self._pattern.search(text) is None:
            return text
        return self.redact_head(text, len(text))[0]

    def redact_head(self, text: str, cut: int) -> tuple[str, int]:
        """The redacted text of ``text[:cut]`` and how many characters of ``text`` it consumed.

        A match that starts before ``cut`` is taken whole (the consumed count then passes ``cut``);
        the caller guarantees that ``text`` reaches at least ``max_form_length`` past ``cut`` (or
        is complete), so no secret form can start before ``cut`` and end outside ``text``.
        """
        if self._pattern is None:
            return text[:cut], min(cut, len(text))
        out: list[str] = []
        position = 0
        for start, end in self._spans(text, min(len(text), cut + self.max_form_length)):
            if start >= cut:
                break
            out += [text[position:start], REDACTED]
            position = end
        cut = max(cut, position)
        out.append(text[position:cut])
        return "".join(out), cut

    def could_start(self, tail: str) -> bool:
        """True when ``tail`` (the end of a stream so far) is the beginning of some secret form."""
        if tail[:_HEAD] not in self._heads:
            return False
        if len(tail) <= _HEAD:
            return True
        index = bisect.bisect_left(self._sorted_forms, tail)
        return index < len(self._sorted_forms) and self._sorted_forms[index].startswith(tail)

    def redact_data(self, data: Any) -> Any:
        """A copy of JSON-like ``data`` with every string (keys included) redacted."""
        if self._pattern is None:
            return data
        if isinstance(data, str):
            return self.redact(data)
        if isinstance(data, dict):
            return {self.redact(k) if isinstance(k, str) else k: self.redact_data(v) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.redact_data(v) for v in data]
        return data

    def stream(self) -> StreamRedactor:
        """A redactor for text that arrives in pieces (LLM tokens)."""
        return StreamRedactor(self)


class StreamRedactor:
    """Redacts a stream of text pieces, holding back only what could be the start of a secret.

    A secret form cut by a token boundary must be complete in the buffer before any part of it is
    released. So the tail that *could* begin a form (at most ``max_form_length - 1`` characters,
    usually none: ordinary text rarely begins a secret) waits for the next piece or :meth:`flush`;
    everything before it is redacted and released at once, so streaming is not delayed.
    Each piece costs one set lookup for each of the last ``max_form_length`` positions and one
    regex pass over the buffer: about 10-20 microseconds per token.
    """

    def __init__(self, redactor: Redactor):
        self._redactor = redactor
        self._pending = ""

    def feed(self, piece: str) -> str:
        """Take ``piece``; return the text that is now safe to release (maybe empty)."""
        if not self._redactor:
            return piece
        buffer = self._pending + piece
        cut = len(buffer)
        for start in range(max(0, len(buffer) - self._redactor.max_form_length + 1), len(buffer)):
            if self._redactor.could_start(buffer[start:]):
                cut = start
                break
        released, consumed = self._redactor.redact_head(buffer, cut)
        self._pending = buffer[consumed:]
        return released

    def flush(self) -> str:
        """The held-back rest, redacted (at the end of the stream)."""
        rest, self._pending = self._pending, ""
        return self._redactor.redact(rest)


# --- the process-wide set -------------------------------------------------------------------------


def register_secret_value(value: str) -> None:
    """Remember a secret this process holds, so every later text is masked of it."""
    if isinstance(value, str) and len(value) >= MIN_SECRET_LENGTH:
        with _lock:
            _process_secrets.add(value)


def register_configuration_secrets(*values: str | None) -> None:
    """Register netops' own configuration secrets (SECRET_KEY, tokens, database passwords) at startup."""
    for value in values:
        if value:
            register_secret_value(value)


def process_secrets() -> frozenset[str]:
    """Every secret value registered in this process."""
    with _lock:
        return frozenset(_process_secrets)


def redactor_for(extra: Iterable[str] = ()) -> Redactor:
    """A redactor for every process secret plus ``extra`` (an entry's own secrets, resolved now).

    ``extra`` values are secrets this process now holds, so they join the process-wide set (later
    texts and log lines are masked of them too). The redactor is compiled once per change of that
    set and shared: secrets are few and stable, so compiling is rare.
    """
    global _compiled
    with _lock:
        _process_secrets.update(s for s in extra if isinstance(s, str) and len(s) >= MIN_SECRET_LENGTH)
        current = frozenset(_process_secrets)
        cached = _compiled
    if cached is None or cached[0] != current:
        cached = (current, Redactor(current))
        with _lock:
            _compiled = cached
    return cached[1]


TRUNCATION_MARK = "… [truncated: "


def sanitize(text: str, *, secrets: Iterable[str] = (), limit: int | None = None) -> str:
    """Redact ``text`` of every secret (process-wide plus ``secrets``), then cut it to ``limit``.

    Redaction always comes first: cutting first could leave the first half of a secret behind.
    For a huge text only the kept part plus a margin longer than any secret form is scanned: a
    secret form that starts inside the kept part ends inside the margin and is masked whole.
    """
    if not text:
        return text
    redactor = redactor_for(secrets)
    if limit is None or limit <= 0 or len(text) <= limit:
        return redactor.redact(text)
    kept, _consumed = redactor.redact_head(text, limit)
    return f"{kept}{TRUNCATION_MARK}{len(text):,} characters, showing the first {limit:,}]"


def sanitize_data(data: Any, *, secrets: Iterable[str] = ()) -> Any:
    """:func:`sanitize` (without a limit) for every string inside JSON-like ``data``."""
    return redactor_for(secrets).redact_data(data)


_UNSAFE_HEADER = re.compile(r"[^\t\x20-\x7e]")


def unsafe_header_value(value: str) -> bool:
    """True when ``value`` cannot travel in an HTTP header as is.

    CR, LF and NUL would inject headers (h11 refuses them, quoting the value in its error); other
    control and non-ASCII characters make the HTTP libraries raise errors that quote the value too.
    Checking before sending lets the caller name the header and the reference, never the value.
    """
    return bool(_UNSAFE_HEADER.search(value))
