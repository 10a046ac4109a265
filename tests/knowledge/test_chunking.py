"""Chunking: heading paths, exact line ranges, bounded size with overlap, reST titles, code that looks like
headings. Pure functions, no database and no model (except the one check against the real tokenizer)."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from codexk8s_pipelines.knowledge.chunking import MAX_TOKENS, Chunk, chunk_document, document_title, estimate_tokens

from .docs_tree import DOCS

REPO_ROOT = Path(__file__).resolve().parents[2]


def lines_of(text: str, chunk: Chunk) -> str:
    return "\n".join(text.splitlines()[chunk.start_line - 1 : chunk.end_line])


def assert_exact_ranges(text: str, chunks: list[Chunk]) -> None:
    """Every chunk is exactly the lines its range names (pieces of one long line: words of that line)."""
    for c in chunks:
        if c.start_line == c.end_line and "\n" not in c.text:
            assert c.text in text.splitlines()[c.start_line - 1]
        else:
            assert c.text == lines_of(text, c).strip("\n"), c


def test_markdown_headings_give_nested_heading_paths_and_exact_line_ranges() -> None:
    text = (
        "Intro before any heading.\n"
        "\n"
        "# Guide\n"
        "\n"
        "Welcome.\n"
        "\n"
        "## Install ##\n"
        "Run pip.\n"
        "\n"
        "### On Linux\n"
        "Use apt.\n"
        "\n"
        "## Usage\n"
        "Call it.\n"
        "# Appendix\n"
        "The end.\n"
    )
    chunks = chunk_document(text, "docs/guide.md")
    got = [(c.chunk_index, c.heading_path, c.start_line, c.end_line) for c in chunks]
    assert got == [
        (0, (), 1, 1),
        (1, ("Guide",), 3, 5),
        (2, ("Guide", "Install"), 7, 8),
        (3, ("Guide", "Install", "On Linux"), 10, 11),
        (4, ("Guide", "Usage"), 13, 14),
        (5, ("Appendix",), 15, 16),
    ]
    assert_exact_ranges(text, chunks)
    assert all(c.path == "docs/guide.md" for c in chunks)


def test_setext_headings_and_a_heading_without_body_makes_no_chunk() -> None:
    text = "Title\n=====\n\nSub\n---\n\nBody text.\n\nOther\n-----\nMore.\n"
    chunks = chunk_document(text, "README.md")
    assert [(c.heading_path, c.start_line, c.end_line) for c in chunks] == [
        (("Title", "Sub"), 4, 7),
        (("Title", "Other"), 9, 11),
    ]
    assert chunks[0].text.startswith("Sub\n---")


def test_a_thematic_break_under_a_paragraph_line_or_a_list_is_not_a_heading() -> None:
    text = "# T\n\nfirst line\nsecond line\n---\n\n- item\n---\n"
    chunks = chunk_document(text, "a.md")
    assert [c.heading_path for c in chunks] == [("T",)]


def test_code_fences_are_never_headings() -> None:
    text = (
        "# Real\n"
        "\n"
        "```bash\n"
        "# not a heading, a shell comment\n"
        "echo hi\n"
        "Setext look-alike\n"
        "=================\n"
        "```\n"
        "\n"
        "~~~~\n"
        "## also not a heading\n"
        "```\n"
        "still inside the tilde fence\n"
        "~~~~\n"
        "After the fences.\n"
    )
    chunks = chunk_document(text, "a.md")
    assert len(chunks) == 1
    assert chunks[0].heading_path == ("Real",)
    assert (chunks[0].start_line, chunks[0].end_line) == (1, 15)


def test_yaml_front_matter_is_not_a_heading_nor_text_but_gives_the_title() -> None:
    text = "---\ntitle: Guide\n---\n\n# Guide\n\nBody.\n"
    chunks = chunk_document(text, "a.md")
    assert [(c.heading_path, c.start_line, c.title) for c in chunks] == [(("Guide",), 5, "Guide")]
    assert chunks[0].embedding_text == "Guide\n\n# Guide\n\nBody."  # the title once, as the path starts with it


def test_the_document_title_goes_into_what_is_embedded_and_indexed() -> None:
    text = (
        '---\ntitle: "Managing environments"\nweight: 3\n---\n\n'
        "## Switching\n\nUse `env use`.\n\n```sh\n# not a heading\n```\n"
    )
    chunks = chunk_document(text, "docs/envs.md")
    assert [(c.heading_path, c.title) for c in chunks] == [(("Switching",), "Managing environments")]
    assert chunks[0].heading_text == "Managing environments > Switching"
    assert chunks[0].embedding_text.startswith("Managing environments > Switching\n\n## Switching")
    assert "# not a heading" in chunks[0].text and "weight: 3" not in chunks[0].text
    # Without front matter, the first top-level heading is the title.
    plain = chunk_document("# Tool\n\nIntro.\n\n## Install\n\npip install tool\n", "README.md")
    assert [(c.heading_path, c.heading_text) for c in plain] == [
        (("Tool",), "Tool"),
        (("Tool", "Install"), "Tool > Install"),
    ]


def test_rst_titles_over_and_underlined_with_levels_in_order_of_appearance() -> None:
    text = DOCS["docs/architecture.rst"]
    chunks = chunk_document(text, "docs/architecture.rst")
    assert [(c.heading_path, c.start_line, c.end_line) for c in chunks] == [
        (("Architecture",), 1, 5),
        (("Architecture", "Cache layer"), 7, 11),
        (("Architecture", "Message queue"), 13, 22),
    ]
    # The indented literal block's "=====" under code is not a title.
    assert "publish(" in chunks[2].text
    assert_exact_ranges(text, chunks)


def test_rst_levels_follow_adornment_styles_and_short_underlines_are_not_titles() -> None:
    text = (
        "Guide\n"
        "#####\n"
        "\n"
        "Part one\n"
        "********\n"
        "\n"
        "Step\n"
        "====\n"
        "Do it.\n"
        "\n"
        "Part two\n"
        "********\n"
        "\n"
        "A long line that is not a title\n"
        "====\n"
        "Text.\n"
    )
    chunks = chunk_document(text, "guide.rst")
    assert [(c.heading_path, c.start_line) for c in chunks] == [
        (("Guide", "Part one", "Step"), 7),
        (("Guide", "Part two"), 11),
    ]


def test_long_sections_split_within_the_budget_with_overlap_and_keep_their_heading_path() -> None:
    paragraphs = [
        f"Paragraph {n} explains the retry policy of the payment worker in some detail, sentence {n}.\n"
        f"It continues on a second line so that paragraphs span several lines, part {n}.\n"
        for n in range(40)
    ]
    text = "# Policy\n\n## Retries\n\n" + "\n".join(paragraphs)
    chunks = chunk_document(text, "docs/policy.md")
    assert len(chunks) > 5
    assert all(c.heading_path == ("Policy", "Retries") for c in chunks)
    assert all(estimate_tokens(c.embedding_text) <= MAX_TOKENS for c in chunks)
    for before, after in itertools.pairwise(chunks):
        assert after.start_line <= before.end_line, "consecutive pieces overlap"
        assert after.start_line > before.start_line, "and always move forward"
    assert chunks[0].start_line == 3 and chunks[-1].end_line == len(text.splitlines())
    covered = set().union(*(range(c.start_line, c.end_line + 1) for c in chunks))
    non_blank = {i + 1 for i, line in enumerate(text.splitlines()) if line.strip() and i >= 2}
    assert non_blank <= covered
    assert_exact_ranges(text, chunks)


def test_one_very_long_line_is_split_into_pieces_of_that_line() -> None:
    text = "# Wall\n\n" + " ".join(f"word{n}" for n in range(900)) + "\n"
    chunks = chunk_document(text, "wall.md")
    body = [c for c in chunks if c.start_line == 3]
    assert len(body) >= 4
    assert all(c.end_line == 3 and estimate_tokens(c.embedding_text) <= MAX_TOKENS for c in chunks)
    assert "word0" in chunks[0].text and "word899" in chunks[-1].text


def test_content_hash_covers_text_and_heading_path_not_position() -> None:
    a = chunk_document("# A\n\nSame text.\n", "x.md")[0]
    moved = chunk_document("\n\n\n# A\n\nSame text.\n", "y.md")[0]
    renamed = chunk_document("# B\n\nSame text.\n", "x.md")[0]
    assert a.content_hash == moved.content_hash and a.start_line != moved.start_line
    assert a.content_hash != renamed.content_hash
    assert a.embedding_text == "A\n\n# A\n\nSame text."


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        chunk_document("x", "a.md", max_tokens=5)
    with pytest.raises(ValueError, match="overlap_tokens"):
        chunk_document("x", "a.md", max_tokens=100, overlap_tokens=60)


def test_every_chunk_fits_the_models_window_by_the_real_tokenizer() -> None:
    """The cheap estimate is good enough: no chunk of the fixture docs or of this project's own docs would be
    truncated by the model (256 word pieces)."""
    from transformers import AutoTokenizer

    from codexk8s_pipelines.knowledge.embedding import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(str(resolve_model()[0]))
    documents = dict(DOCS)
    for name in ("README.md", "helm/README.md"):
        if (REPO_ROOT / name).is_file():
            documents[name] = (REPO_ROOT / name).read_text(encoding="utf-8")
    longest = 0
    for path, text in documents.items():
        for c in chunk_document(text, path):
            longest = max(longest, len(tokenizer.tokenize(c.embedding_text)) + 2)  # [CLS] and [SEP]
    assert 0 < longest <= 256


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("# a" + " " * 200_000 + "x\nbody\n", id="heading-with-a-long-run-of-spaces"),
        pytest.param("---\ntitle: a" + " " * 200_000 + "x\n---\n# T\nbody\n", id="front-matter-title"),
        pytest.param("\n" * 200_000 + "text\n", id="blank-lines"),
        pytest.param("# a " + "#" * 200_000 + "x\nbody\n", id="heading-with-a-long-run-of-hashes"),
    ],
)
def test_a_hostile_document_is_chunked_in_linear_time(text: str) -> None:
    """Anyone may write a repository's docs, and the nightly index reads them all: a heading line of 100 kB spaces
    took over 30 s (the heading regex backtracked), 100,000 blank lines 20 s (a window sliced one line at a time).

    Measured beside an ordinary document of as many characters (lines of words), in the same moment: a loaded
    machine slows both alike (200,000 blank lines took 0.9 s quiet and 2.2 s in a busy run, against a 2 s bound).
    Blank lines cost about 4 times as much as lines of words (0.97 s against 0.23 s, quiet), so the bound is 8 times
    the ordinary document: a quadratic walk (80 s, over 300 times) still fails it by far."""
    plain = "word\n" * (len(text) // 5)
    started = time.perf_counter()
    chunk_document(plain, "plain.md")
    document_title(plain, "plain.md")
    ordinary = time.perf_counter() - started
    started = time.perf_counter()
    chunks = chunk_document(text, "hostile.md")
    document_title(text, "hostile.md")
    assert time.perf_counter() - started < max(2.0, 8 * ordinary)
    assert chunks and chunks[-1].text.strip()


def test_atx_headings_follow_commonmark_closing_sequences() -> None:
    assert [c.heading_path for c in chunk_document("# Title ##\nbody\n", "a.md")] == [("Title",)]
    assert [c.heading_path for c in chunk_document("# C# rocks\nbody\n", "a.md")] == [("C# rocks",)]
    assert [c.heading_path for c in chunk_document("## a #b\nbody\n", "a.md")] == [("a #b",)]
    assert [c.heading_path for c in chunk_document("### ###\nbody\n", "a.md")] == [()]  # an empty heading
    assert document_title("---\ntitle: 'Quoted'\n---\nbody\n", "a.md") == "Quoted"


@pytest.mark.parametrize("brk", ["\u2028", "\u0085", "\x0c"])
def test_line_ranges_are_githubs_when_a_line_holds_another_break(brk: str) -> None:
    """GitHub ends a line at "\\n" alone, and so does Markdown (besides "\\r"): a U+2028 pasted into a paragraph, or a
    form feed in an old text, moved every later line range one down (and could make a heading of what follows it)."""
    text = f"# Install\n\nRun the installer.{brk}# Not a heading\nThen restart.\n\n## Upgrade\n\nUpgrade it.\n"
    chunks = chunk_document(text, "docs/setup.md")
    assert [(c.heading_path, c.start_line, c.end_line) for c in chunks] == [
        (("Install",), 1, 4),
        (("Install", "Upgrade"), 6, 8),
    ]
    assert brk in chunks[0].text  # the character stays where it was, inside line 3
