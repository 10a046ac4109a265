"""Split Markdown and reStructuredText documents into heading-scoped chunks small enough to embed whole.

Why chunks follow headings: a hit must point a human (or an agent) at a section they can open, so every chunk
keeps the file, its heading path and its exact 1-based line range, with lines as GitHub numbers them
(`file_lines`). Why the size bound: the embedding model reads at most 256 word pieces and silently drops the
rest, so a section longer than ~200 estimated tokens is cut into pieces that overlap a little, so that a sentence
cut at a boundary is still whole in one of them.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from ..file_lines import text_lines

MAX_TOKENS = 200
OVERLAP_TOKENS = 40

_PIECE = re.compile(r"[A-Za-z]+|\d+|[^\sA-Za-z\d]")
# An ATX heading's opening: its level, then (see `_atx`) its text. Only the opening is a regex: the former one-regex
# form (lazy text before an optional closing run of `#`) backtracked over every space of a long line, quadratic in
# its length (a 100 kB line took over 30 s), and a docs file is anyone's to write.
_ATX = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)")
_CLOSING_HASHES = re.compile(r"(?:^|[ \t])#+$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# HTML blocks whose end is a marker (CommonMark kinds 1-5): raw HTML, never headings, until the line holding it.
_HTML_ENDS: tuple[tuple[re.Pattern[str], re.Pattern[str]], ...] = (
    (
        re.compile(r"^ {0,3}<(?:pre|script|style|textarea)(?:[ \t>]|$)", re.I),
        re.compile(r"</(?:pre|script|style|textarea)>", re.I),
    ),
    (re.compile(r"^ {0,3}<!--"), re.compile(r"-->")),
    (re.compile(r"^ {0,3}<\?"), re.compile(r"\?>")),
    (re.compile(r"^ {0,3}<![A-Za-z]"), re.compile(r">")),
    (re.compile(r"^ {0,3}<!\[CDATA\["), re.compile(r"\]\]>")),
)
# CommonMark kind 6: a block-level tag opens raw HTML that lasts until a blank line.
_HTML_BLOCK_TAG = re.compile(
    r"^ {0,3}</?(?:address|article|aside|base|basefont|blockquote|body|caption|center|col|colgroup|dd|details|"
    r"dialog|dir|div|dl|dt|fieldset|figcaption|figure|footer|form|frame|frameset|h[1-6]|head|header|hr|html|"
    r"iframe|legend|li|link|main|menu|menuitem|nav|noframes|ol|optgroup|option|p|param|search|section|summary|"
    r"table|tbody|td|tfoot|th|thead|title|tr|track|ul)(?:[ \t]|/?>|$)",
    re.I,
)
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_RST_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_LIST_OR_BLOCK = re.compile(r"^ {0,3}([-+*>]|\d+[.)])(\s|$)")


def _atx(line: str) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line, its closing run of `#` removed (CommonMark), or None; linear time."""
    opening = _ATX.match(line)
    if opening is None:
        return None
    text = line[opening.end() :].strip(" \t")
    closing = _CLOSING_HASHES.search(text)
    if closing is not None:
        text = text[: closing.start()].rstrip(" \t")
    return len(opening.group(1)), text


def estimate_tokens(text: str) -> int:
    """A cheap estimate of the model's word-piece count (no tokenizer load: chunking stays fast and pure).

    Letter runs count one piece per started 6 characters (WordPiece splits long and rare words), digits one
    per started 3, every punctuation mark one. On this project's docs it is within about 15% of the real
    count (median equal), so a 200-token budget stays well inside the model's 256 (a test checks it).
    """
    count = 0
    for piece in _PIECE.findall(text):
        if piece[0].isalpha():
            count += (len(piece) + 5) // 6
        elif piece[0].isdigit():
            count += (len(piece) + 2) // 3
        else:
            count += 1
    return count


def heading_context(title: str, heading_path: tuple[str, ...]) -> tuple[str, ...]:
    """The document title, then the heading path (the title once, when the path already starts with it)."""
    if title and heading_path[:1] != (title,):
        return (title, *heading_path)
    return heading_path


def heading_text(title: str, heading_path: tuple[str, ...]) -> str:
    """What the full-text index weights above the body (and the model reads first): title and heading path."""
    return " > ".join(heading_context(title, heading_path))


@dataclass(frozen=True)
class Chunk:
    """One indexed piece of a document: what it says, where it is, under which headings."""

    path: str
    chunk_index: int
    heading_path: tuple[str, ...]
    start_line: int
    end_line: int
    text: str
    title: str = ""  # the document's title (front matter `title:`, else its first top-level heading)

    @property
    def context(self) -> tuple[str, ...]:
        """The document title, then the heading path (the title once, when the path already starts with it)."""
        return heading_context(self.title, self.heading_path)

    @property
    def heading_text(self) -> str:
        """What the full-text index weights above the body: title and heading path."""
        return heading_text(self.title, self.heading_path)

    @property
    def embedding_text(self) -> str:
        """What the model reads: title and heading path first, so a continuation piece still knows its section
        and a section of a short heading ("Usage") still says which document it belongs to."""
        if not self.context:
            return self.text
        return self.heading_text + "\n\n" + self.text

    @property
    def content_hash(self) -> str:
        """Hash of exactly what gets embedded: equal hash (and model) means the stored vector is still right."""
        return hashlib.sha256(self.embedding_text.encode("utf-8")).hexdigest()


class _Start(NamedTuple):
    line: int  # 0-based first line of the heading (the overline of an overlined reST title)
    level: int
    title: str
    size: int  # lines the heading takes: 1 (ATX), 2 (Setext, underlined reST), 3 (overlined reST)


@dataclass(frozen=True)
class Section:
    heading_path: tuple[str, ...]
    start_line: int  # 1-based, inclusive
    lines: tuple[str, ...]


# -- section detection ----------------------------------------------------------------------------------------
def _markdown_sections(lines: Sequence[str]) -> list[Section]:
    """Markdown: ATX (`# Title`) and Setext (`Title` over `===`/`---`) headings, as CommonMark (and so GitHub) reads
    them: fenced code and raw HTML blocks (a multi-line `<!-- ... -->` comment, `<details>` up to a blank line) are
    never headings, so a heading commented out of a README does not become a section of the index."""
    starts: list[_Start] = []
    fence: str | None = None
    html_end: re.Pattern[str] | None = None  # the marker ending the current raw HTML block (kinds 1-5)
    html_until_blank = False  # in a raw HTML block of kind 6, which a blank line ends
    opaque = -1  # the last line that was code or raw HTML: never the text of a Setext heading
    front_matter_end = _front_matter_end(lines)
    for i, line in enumerate(lines):
        if i <= front_matter_end:
            continue
        if fence is not None:
            opaque = i
            if _closes_fence(line, fence):
                fence = None
            continue
        if html_end is not None:
            opaque = i
            if html_end.search(line):
                html_end = None
            continue
        if html_until_blank:
            if line.strip():
                opaque = i
                continue
            html_until_blank = False
        opening = _fence_opening(line)
        if opening is not None:
            fence, opaque = opening, i
            continue
        html = _html_opening(line)
        if html is not None:
            opaque = i
            if html is _BLANK_ENDS:
                html_until_blank = True
            elif not html.search(line):  # a one-line comment or tag ends where it starts
                html_end = html
            continue
        atx = _atx(line)
        if atx:
            starts.append(_Start(i, atx[0], atx[1], 1))
            continue
        setext = _SETEXT.match(line)
        if setext and i > 0 and opaque != i - 1 and _is_setext_title(lines, i - 1, starts):
            level = 1 if setext.group(1)[0] == "=" else 2
            starts.append(_Start(i - 1, level, lines[i - 1].strip(), 2))
    return _sections_from_starts(lines, starts, body=front_matter_end + 1)


def _fence_opening(line: str) -> str | None:
    """The run of backticks or tildes opening a fenced code block, or None. CommonMark: the info string after a
    backtick fence cannot hold a backtick, so "```make run``` starts it" is inline code in a paragraph, not a
    fence that would hide every heading below it."""
    m = _FENCE.match(line)
    if m is None or (m.group(1)[0] == "`" and "`" in line[m.end() :]):
        return None
    return m.group(1)


def _closes_fence(line: str, fence: str) -> bool:
    """A closing fence: the same character, at least as many, indented at most 3 spaces, then only spaces or tabs."""
    m = _FENCE.match(line)
    return (
        m is not None
        and m.group(1)[0] == fence[0]
        and len(m.group(1)) >= len(fence)
        and not line[m.end() :].strip(" \t")
    )


_BLANK_ENDS = re.compile(r"^[ \t]*$")  # the "end" of a raw HTML block of kind 6: a blank line


def _html_opening(line: str) -> re.Pattern[str] | None:
    """The end condition of the raw HTML block this line opens (CommonMark kinds 1-6), or None. Kind 7 (any
    other lone tag) is left out: it cannot interrupt a paragraph and needs a full tag grammar to tell."""
    if "<" not in line[:4]:
        return None
    for opening, end in _HTML_ENDS:
        if opening.match(line):
            return end
    return _BLANK_ENDS if _HTML_BLOCK_TAG.match(line) else None


def _front_matter_end(lines: Sequence[str]) -> int:
    """The 0-based line closing a YAML front matter block (`---` … `---` at the top), else -1: its closing
    `---` under `key: value` would otherwise read as a Setext heading."""
    if not lines or lines[0].strip() != "---":
        return -1
    return next((i for i in range(1, len(lines)) if lines[i].strip() in ("---", "...")), -1)


def _is_setext_title(lines: Sequence[str], i: int, starts: list[_Start]) -> bool:
    """A one-line paragraph right above the underline: not blank, not indented code, not a list or quote."""
    title = lines[i]
    if not title.strip() or title.startswith(("    ", "\t")) or _LIST_OR_BLOCK.match(title):
        return False
    if _ATX.match(title) or _fence_opening(title) or _html_opening(title) or (starts and starts[-1].line == i):
        return False
    return i == 0 or not lines[i - 1].strip()


def _rst_sections(lines: Sequence[str]) -> list[Section]:
    """reST: a title underlined (optionally also overlined) by one punctuation character at least as long as
    the title; levels follow the order in which adornment styles first appear, as docutils assigns them.
    Indented lines (literal blocks, directive bodies) are never titles, except the text between an overline and
    its matching underline, which docutils lets be inset ("=====\\n  Guide\\n=====")."""
    styles: list[tuple[str, bool]] = []
    starts: list[_Start] = []
    skip_until = -1
    for i, line in enumerate(lines):
        if i <= skip_until or i == 0:
            continue
        under = _RST_ADORNMENT.match(line)
        title = lines[i - 1]
        if not under or not title.strip() or _RST_ADORNMENT.match(title):
            continue
        over = i >= 2 and lines[i - 2].rstrip() == line.rstrip()
        if title[0].isspace() and not over:
            continue
        if len(line.rstrip()) < len(title.rstrip()):  # an inset title's indent counts, as docutils measures it
            continue
        style = (under.group(1), over)
        if style not in styles:
            styles.append(style)
        start = i - 2 if over else i - 1
        starts.append(_Start(start, styles.index(style) + 1, title.strip(), i - start + 1))
        skip_until = i
    return _sections_from_starts(lines, starts)


def _sections_from_starts(lines: Sequence[str], starts: list[_Start], body: int = 0) -> list[Section]:
    """Sections between consecutive headings. A heading directly followed by a sub-heading makes no section of
    its own: its title lives on in the heading path of the sections below it. Lines before `body` (Markdown
    front matter: metadata, not text) belong to no section."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    bounds = [*starts, _Start(len(lines), 0, "", 0)]
    first = starts[0].line if starts else len(lines)
    if any(x.strip() for x in lines[body:first]):
        sections.append(Section((), body + 1, tuple(lines[body:first])))
    for head, following in itertools.pairwise(bounds):
        while stack and stack[-1][0] >= head.level:
            stack.pop()
        stack.append((head.level, head.title))
        if any(x.strip() for x in lines[head.line + head.size : following.line]):
            path = tuple(t for _, t in stack if t)
            sections.append(Section(path, head.line + 1, tuple(lines[head.line : following.line])))
    return sections


_FRONT_TITLE = re.compile(r"^title:(?P<title>.*)$")  # quotes and spaces are taken off in `_title`: linear


def document_title(text: str, path: str) -> str:
    """The title of a document: its front matter's `title:` (Markdown), else its first top-level heading."""
    lines = _lines(text)
    return _title(lines, path, _split(lines, path))


def _title(lines: Sequence[str], path: str, sections: Sequence[Section]) -> str:
    """`document_title` from the document's lines and its sections, already split."""
    if not path.lower().endswith((".rst", ".rest")):
        for line in lines[1 : max(_front_matter_end(lines), 0)]:
            m = _FRONT_TITLE.match(line)
            title = _unquoted(m.group("title").strip(" \t")) if m else ""
            if title.strip():
                return title.strip()
    heads = [s.heading_path[0] for s in sections if s.heading_path]
    return heads[0] if heads else ""


def _unquoted(value: str) -> str:
    """A front matter value without the quotes around it, if it has a matching pair."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


# The payload of an inline `data:` URI (an image pasted into a README): base64, no words. Cut into pieces that fit
# the model, a 40 kB image made ~236 chunks of noise for search to return (and 1.9 MB ~11,000 to embed); its media
# type stays, its payload becomes "…". Bounded repetitions only: linear on any input.
_DATA_URI_PAYLOAD = re.compile(
    r"(data:[^\s,;()\"'<>]{1,100}(?:;[^\s,;()\"'<>]{1,100}){0,5};base64,)[A-Za-z0-9+/]{64,}={0,2}"
)


def _lines(text: str) -> list[str]:
    """The document's lines, a leading byte-order mark dropped: "\\ufeff# Guide" is no heading and "\\ufeff---" opens
    no front matter, so a file saved "with BOM" lost its title and indexed its metadata as text. The mark takes no
    line, so every line keeps its number. Inline data URIs keep their media type, not their payload."""
    return text_lines(_DATA_URI_PAYLOAD.sub(r"\1…", text.removeprefix("\ufeff")))


def split_sections(text: str, path: str) -> list[Section]:
    """The document's sections in order; `.rst`/`.rest`/`.txt` use reST titles, anything else Markdown."""
    return _split(_lines(text), path)


def _split(lines: Sequence[str], path: str) -> list[Section]:
    if path.lower().endswith((".rst", ".rest")):
        return _rst_sections(lines)
    return _markdown_sections(lines)


# -- size bounding ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Unit:
    line: int  # 1-based
    text: str
    tokens: int
    blank: bool
    glued: bool = False  # the rest of a word cut in two: rejoins the unit before it without a space


def _units(section: Section, budget: int) -> list[_Unit]:
    """Lines of a section; a single line longer than the budget (a soft-wrapped paragraph) becomes several, cut
    between words, and a word longer than half the budget (a CJK paragraph, a base64 data URI, URLs joined by
    commas: no whitespace at all) is cut within, so that no unit, and so no chunk, outgrows the model's window."""
    units: list[_Unit] = []
    half = budget // 2
    for offset, line in enumerate(section.lines):
        number = section.start_line + offset
        tokens = estimate_tokens(line)
        if tokens <= budget:
            units.append(_Unit(number, line, tokens, not line.strip()))
            continue
        piece: list[str] = []
        piece_tokens = 0
        for word in line.split():
            t = estimate_tokens(word)
            if piece and piece_tokens + t > half:
                units.append(_Unit(number, " ".join(piece), piece_tokens, False))
                piece, piece_tokens = [], 0
            if t > half:
                units.extend(
                    _Unit(number, text, cost, False, glued=k > 0)
                    for k, (text, cost) in enumerate(_cut_word(word, half))
                )
                continue
            piece.append(word)
            piece_tokens += t
        if piece:
            units.append(_Unit(number, " ".join(piece), piece_tokens, False))
    return units


_SEPARATORS = frozenset(",;|&。，、；！？")  # where a long word is best cut: between list items, clauses, sentences


def _cut_word(word: str, limit: int) -> list[tuple[str, int]]:
    """Consecutive pieces of `word` and their cost, each costing at most `limit`: cut after the last separator in
    the second half of a piece (between the URLs of a comma-joined list, after a CJK full stop), else right at the
    limit. One pass: linear in the word's length.

    The cost of a character is not the estimate but a bound on the word pieces it can become: a word piece covers
    at least one character of the text the tokenizer reads, which is the text decomposed (NFD: a Hangul syllable
    is two or three characters). The estimate fits prose; it undercounts random text such as base64 by half."""
    out: list[tuple[str, int]] = []
    start = used = 0
    brk, brk_used = -1, 0  # just after the last separator in the current piece, and the cost up to there
    for k, ch in enumerate(word):
        cost = 1 if ch.isascii() else len(unicodedata.normalize("NFD", ch))
        if used + cost > limit and k > start and brk > start and brk_used >= limit // 2:
            out.append((word[start:brk], brk_used))
            start, used, brk = brk, used - brk_used, -1
        if used + cost > limit and k > start:
            out.append((word[start:k], used))
            start, used, brk = k, 0, -1
        used += cost
        if ch in _SEPARATORS:
            brk, brk_used = k + 1, used
    if start < len(word):
        out.append((word[start:], used))
    return out


def _join(units: Sequence[_Unit]) -> str:
    """Units back to text: pieces of one long line rejoin with spaces (a word cut within: with nothing), distinct
    lines with newlines."""
    out: list[str] = []
    for prev, unit in zip([None, *units], units, strict=False):
        if prev is not None:
            out.append(("" if unit.glued else " ") if prev.line == unit.line else "\n" * (unit.line - prev.line))
        out.append(unit.text)
    return "".join(out).strip("\n")


def _windows(units: list[_Unit], budget: int, overlap: int) -> list[tuple[int, int]]:
    """Half-open unit ranges of at most `budget` tokens, cut at a blank line when one is in the second half of
    the window, each starting up to `overlap` tokens before the previous one ended."""
    windows: list[tuple[int, int]] = []
    start, n = 0, len(units)
    while start < n:
        end, used = start, 0
        while end < n and (end == start or used + units[end].tokens <= budget):
            used += units[end].tokens
            end += 1
        if end < n:
            half = start + (end - start) // 2
            blank = next((j for j in range(end - 1, half, -1) if units[j].blank), None)
            if blank is not None:
                end = blank + 1
        windows.append((start, end))
        if end >= n:
            break
        back, carried = end, 0
        while back - 1 > start and carried + units[back - 1].tokens <= overlap:
            back -= 1
            carried += units[back].tokens
        while back < end and units[back].blank:  # do not open a piece on blank lines
            back += 1
        start = back
    return windows


def chunk_document(
    text: str, path: str, *, max_tokens: int = MAX_TOKENS, overlap_tokens: int = OVERLAP_TOKENS
) -> list[Chunk]:
    """All chunks of one document, numbered from 0 in reading order; blank sections produce nothing."""
    if max_tokens < 20 or not 0 <= overlap_tokens < max_tokens // 2:
        raise ValueError(
            f"max_tokens must be ≥ 20 and overlap_tokens in [0, max_tokens/2), not {max_tokens}, {overlap_tokens}"
        )
    chunks: list[Chunk] = []
    lines = _lines(text)
    sections = _split(lines, path)  # split once: the title comes from the same sections
    title = _title(lines, path, sections)
    for section in sections:
        # Title and heading path are embedded with every piece: they take their share of the model's window.
        heading = heading_text(title, section.heading_path)
        budget = max(max_tokens - estimate_tokens(heading) - 2, max_tokens // 2)
        units = _units(section, budget)
        for start, end in _windows(units, budget, overlap_tokens):
            # Blank units trimmed off both ends by index, one slice: slicing one off at a time copied the window
            # for each blank line (a file of 100,000 blank lines took 20 s).
            first = next((k for k in range(start, end) if not units[k].blank), end)
            last = next((k for k in range(end - 1, first - 1, -1) if not units[k].blank), first - 1)
            piece = units[first : last + 1]
            if not piece:
                continue
            chunks.append(
                Chunk(
                    path=path,
                    chunk_index=len(chunks),
                    heading_path=section.heading_path,
                    start_line=piece[0].line,
                    end_line=piece[-1].line,
                    text=_join(piece),
                    title=title,
                )
            )
    return chunks
