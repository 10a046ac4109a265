"""Chunking at the edges a review found: a byte-order mark, Markdown that CommonMark (and so GitHub) reads
otherwise than the former block parser (inline triple backticks, raw HTML blocks), inset reST titles, and lines
without whitespace (CJK, a data URI, comma-joined URLs) that made one chunk of thousands of tokens."""

from __future__ import annotations

import base64
import random
import time

import pytest

from codexk8s_pipelines.knowledge.chunking import Chunk, chunk_document, document_title, split_sections


def paths(text: str, path: str = "docs/x.md") -> list[tuple[tuple[str, ...], int, int]]:
    return [(c.heading_path, c.start_line, c.end_line) for c in chunk_document(text, path)]


# -- byte-order mark ------------------------------------------------------------------------------------------
def test_a_byte_order_mark_hides_neither_the_first_heading_nor_the_front_matter() -> None:
    text = "\ufeff# Guide\n\nIntro text.\n\n## Install\n\nRun make.\n"
    chunks = chunk_document(text, "docs/x.md")
    assert [(c.heading_path, c.start_line, c.end_line) for c in chunks] == [
        (("Guide",), 1, 3),
        (("Guide", "Install"), 5, 7),
    ]
    assert {c.title for c in chunks} == {"Guide"} and chunks[0].text.startswith("# Guide")

    front = "\ufeff---\ntitle: Real Title\nlayout: page\n---\n\n## Install\n\nRun make.\n"
    chunks = chunk_document(front, "docs/x.md")
    assert [(c.title, c.heading_path, c.start_line) for c in chunks] == [("Real Title", ("Install",), 6)]
    assert "layout" not in chunks[0].text  # metadata, not text
    assert document_title(front, "docs/x.md") == "Real Title"
    assert split_sections(front, "docs/x.md")[0].start_line == 6


def test_a_byte_order_mark_before_a_rest_title() -> None:
    assert paths("\ufeffGuide\n=====\n\nText.\n", "docs/x.rst") == [(("Guide",), 1, 4)]


# -- fenced code ----------------------------------------------------------------------------------------------
def test_inline_code_in_triple_backticks_opens_no_fence() -> None:
    """CommonMark: the info string of a backtick fence cannot hold a backtick, so "```make run```" is inline code
    in a paragraph; read as a fence, it hid every later heading of the document."""
    text = (
        "# Setup\n\n```make run``` starts it.\n\n## Troubleshooting\n\nIf the port is busy, stop the other server.\n"
        "\n## FAQ\n\nAsk in chat.\n"
    )
    assert paths(text) == [
        (("Setup",), 1, 3),
        (("Setup", "Troubleshooting"), 5, 7),
        (("Setup", "FAQ"), 9, 11),
    ]


def test_real_fences_still_hide_headings() -> None:
    """A fence with an info string, a tilde fence whose info string holds backticks (allowed), a longer closing
    run, and a closing fence followed by a tab (which the former parser did not see as closing)."""
    text = (
        "# A\n\n```python title\n# not a heading\n```\n\n"
        "~~~ `odd` info\n# not either\n~~~~\n\n"
        "````\n```\n# inside\n```\n````\t\n\n"
        "## B\n\ntext b\n"
    )
    chunks = chunk_document(text, "a.md")
    assert [c.heading_path for c in chunks] == [("A",), ("A", "B")]
    assert "# not a heading" in chunks[0].text and "# inside" in chunks[0].text
    assert chunks[1].start_line == 17


def test_a_closing_run_of_the_other_character_does_not_close_a_fence() -> None:
    text = "# A\n\n```\ncode\n~~~\n# still code\n```\n\n## B\n\nb\n"
    assert [p for p, _, _ in paths(text)] == [("A",), ("A", "B")]


# -- raw HTML ---------------------------------------------------------------------------------------------------
def test_a_heading_inside_an_html_comment_is_not_a_heading() -> None:
    text = "# Install\n\n<!--\n## Old steps (removed)\nuse the legacy script\n-->\n\nRun `make`.\n\n## Next\n\nn\n"
    assert paths(text) == [(("Install",), 1, 8), (("Install", "Next"), 10, 12)]


def test_raw_html_blocks_follow_commonmark() -> None:
    """Kinds 1-5 end at their marker (a one-line comment ends at once), kind 6 (a block tag) at a blank line."""
    one_line = "# A\n\n<!-- note -->\n## B\n\nb\n"
    assert [p for p, _, _ in paths(one_line)] == [("A",), ("A", "B")]
    details = "# A\n\n<details>\n## Hidden in raw HTML\n</details>\n\n## B\n\nb\n"
    assert [p for p, _, _ in paths(details)] == [("A",), ("A", "B")]
    pre = "# A\n\n<pre>\n\n# not a heading\n\n</pre>\n\n## B\n\nb\n"
    assert [p for p, _, _ in paths(pre)] == [("A",), ("A", "B")]
    # A comment line is no paragraph: the `---` under it is a thematic break, not a Setext underline.
    assert [p for p, _, _ in paths("# A\n\n<!-- x -->\n---\n\nbody\n")] == [("A",)]
    # Inline HTML inside a paragraph line opens no block.
    assert [p for p, _, _ in paths("# A\n\nsee <!-- here\n## B\n\nb\n")] == [("A",), ("A", "B")]


def test_an_unclosed_html_comment_runs_to_the_end_as_github_shows_it() -> None:
    assert [p for p, _, _ in paths("# A\n\n<!-- forgot to close\n\n## B\n\nb\n")] == [("A",)]


# -- reST -------------------------------------------------------------------------------------------------------
def test_an_overlined_rest_title_may_be_inset() -> None:
    text = (
        "=================\n  Project Guide\n=================\n\nIntro paragraph.\n\nInstall\n-------\n\nRun make.\n"
    )
    chunks = chunk_document(text, "docs/x.rst")
    assert [(c.title, c.heading_path, c.start_line, c.end_line) for c in chunks] == [
        ("Project Guide", ("Project Guide",), 1, 5),
        ("Project Guide", ("Project Guide", "Install"), 7, 10),
    ]


def test_an_indented_line_without_an_overline_is_still_no_rest_title() -> None:
    text = "Guide\n=====\n\nText::\n\n    literal\n    =======\n\nmore\n"
    assert [p for p, _, _ in paths(text, "docs/x.rst")] == [("Guide",)]


# -- lines without whitespace ----------------------------------------------------------------------------------
_RANDOM = random.Random(7)
CJK = "这是一个很长的中文段落没有空格安装完成运行命令服务器端口配置文件"
LONG_LINES = {
    # Not one phrase repeated: each piece must be found at its own place in the line.
    "cjk": "# 安装\n\n" + "".join(_RANDOM.choice(CJK) for _ in range(2500)) + "\n\n## 下一步\n\n完成。\n",
    "base64": "# Key\n\nThe test fixture: "
    + base64.b64encode(_RANDOM.randbytes(12_000)).decode()
    + "\n\n## Next\n\nshort\n",
    "url-list": "# Links\n\nSee " + ",".join(f"https://example.com/page{i}" for i in range(300)) + "\n",
    "hangul": "# 설치\n\n" + "".join(chr(_RANDOM.randrange(0xAC00, 0xD7A4)) for _ in range(800)) + "\n",
}


def _covered(line: str, chunks: list[Chunk], number: int) -> None:
    """The chunks on line `number` are consecutive pieces of it, rejoined without inserted spaces, together
    covering every character of the line."""
    reach = 0
    for c in chunks:
        if c.start_line <= number <= c.end_line:
            # The line's part of the chunk: a chunk may open on lines above it or close on lines below.
            part = c.text.split("\n")[number - c.start_line] if c.start_line < number else c.text.split("\n")[0]
            at = line.rfind(part, 0, reach + len(part))
            assert 0 <= at <= reach, (at, reach, part[:40])
            reach = max(reach, at + len(part))
    assert reach == len(line)


@pytest.mark.parametrize("name", sorted(LONG_LINES))
def test_a_line_without_whitespace_is_cut_so_that_every_chunk_fits_the_model(name: str) -> None:
    """By the real tokenizer, as the module's own bound is checked: one CJK paragraph was one chunk of 2,254
    word pieces, a base64 blob one of thousands (the model reads 256 and drops the rest)."""
    from transformers import AutoTokenizer

    from codexk8s_pipelines.knowledge.embedding import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model()[0]))
    text = LONG_LINES[name]
    chunks = chunk_document(text, "docs/x.md")
    assert len(chunks) > 3
    longest = max(len(tokenizer.tokenize(c.embedding_text)) + 2 for c in chunks)  # [CLS] and [SEP]
    assert longest <= 256, longest
    lines = text.split("\n")
    assert chunks[0].start_line == 1 and all(c.end_line <= len(lines) for c in chunks)
    long_line = max(range(len(lines)), key=lambda n: len(lines[n])) + 1
    _covered(lines[long_line - 1], chunks, long_line)


def test_an_inline_images_payload_is_not_indexed() -> None:
    """A pasted image's base64 cut into pieces that fit was ~236 chunks of noise for a 40 kB image (search returned
    them; a 1.9 MB one was ~11,000 to embed): the payload becomes "…", its media type and the text around stay."""
    payload = base64.b64encode(_RANDOM.randbytes(30_000)).decode()
    text = f"# Logo\n\nOur logo: ![logo](data:image/png;base64,{payload}) as shipped.\n\n## Next\n\nshort\n"
    chunks = chunk_document(text, "docs/x.md")
    assert [(c.heading_path, c.start_line, c.end_line) for c in chunks] == [(("Logo",), 1, 3), (("Logo", "Next"), 5, 7)]
    assert "![logo](data:image/png;base64,…) as shipped." in chunks[0].text and payload[:64] not in chunks[0].text
    svg = "data:image/svg+xml;charset=utf-8;base64," + payload[:100]
    assert "base64,…" in chunk_document(f"# A\n\n{svg}\n", "a.md")[0].text
    short = "data:text/plain;base64,aGVsbG8="  # a short one is text someone may search for
    assert short in chunk_document(f"# A\n\n{short}\n", "a.md")[0].text


def test_a_comma_joined_url_list_is_cut_between_urls() -> None:
    chunks = chunk_document(LONG_LINES["url-list"], "docs/x.md")
    assert all(c.text.endswith(",") for c in chunks[1:-1])


def test_words_and_short_lines_are_not_cut() -> None:
    text = "# A\n\n" + " ".join(["word"] * 2000) + "\n"
    assert all(" " in c.text or c.text.startswith("#") for c in chunk_document(text, "a.md"))


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("# a\n\n" + "x" * 2_000_000 + "\n", id="two-megabytes-of-one-letter"),
        pytest.param("# a\n\n" + "这" * 600_000 + "\n", id="cjk"),
        pytest.param("# a\n\n" + "<!--\n" * 200_000, id="unclosed-comments"),
        pytest.param("# a\n\n" + "```x`\n" * 200_000, id="inline-code-lines"),
    ],
)
def test_hostile_documents_stay_linear(text: str) -> None:
    started = time.perf_counter()
    chunks = chunk_document(text, "hostile.md")
    assert time.perf_counter() - started < 5.0
    assert chunks
