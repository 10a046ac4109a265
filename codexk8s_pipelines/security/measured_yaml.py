"""One YAML document, measured as it is composed, so that nothing walks a document that costs more than it says.

Why measured: PyYAML builds a document by recursion, and shares an aliased node rather than copying it. A document
nested a few hundred levels deep raised RecursionError (no YAMLError: it ended the drift check, and reached an
operator as "maximum recursion depth exceeded" for a mistake in `codexk8s.yaml`, naming neither the file nor the
place), and a "billion laughs" (ten aliases to ten aliases, ten levels deep: 600 bytes) loads at once but made every
later walk of it (a diff, a report, the JSON of findings) take minutes and gigabytes. `load_measured` refuses
(`YamlRefused`) a document that nests deeper than MAX_NESTING, whose aliases expand it more than
MAX_ALIAS_EXPANSION-fold or past MAX_DOCUMENT_NODES nodes, or where an alias sits inside the node it names (a cycle,
which a walk would follow forever), before it is constructed. A mapping that repeats a key is refused too (PyYAML
keeps the last value without a word: a `stages:` block appended at the end of `codexk8s.yaml` silently replaced the
one above it, release approval included), naming the line of each.

PyYAML's pure-Python loader is kept on purpose: libyaml's composer recurses in C, and a deep document kills the
process, which no except clause can catch. It parses real manifests at ~1 MB/s and ~30 bytes of memory a byte.

Used by every YAML the platform reads whole: repositories' manifests and helm's output (drift), the operator's
`codexk8s.yaml` and agent catalog (config), drift's ignore rules. Lockfiles and OSV records have their own event
readers (security/lockfiles/_common.py, security/osv.py), which keep lines or skip construction for speed.
"""

from __future__ import annotations

from typing import Any

import yaml

from .safe_files import MAX_NESTING

# Nodes of one document with its aliases expanded: what the diff and the report walk. Argo's largest CRD has 67k; a
# dense document costs ~650 bytes a node to parse, so this bounds one document's parse to about 330 MB.
MAX_DOCUMENT_NODES = 500_000
# How many times its aliases may multiply a document. Anchors for shared labels or a repeated container stay far
# below; without this bound, thousands of small documents could each expand to MAX_DOCUMENT_NODES.
MAX_ALIAS_EXPANSION = 10
# MAX_NESTING (safe_files), the platform's one nesting limit for JSON and YAML: Argo's full CRDs, among the deepest
# manifests there are, nest 37 levels; far deeper crashes the loader and the diff (both recurse) with RecursionError.


MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlRefused(Exception):
    """A document that may be valid YAML but is not loaded; the message says why, in the words of the problem.
    `line` and `column` (1-based) are where the measure was passed, when the loader knew it."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column

    @property
    def where(self) -> str:
        """The place as config errors begin with it ("line L, column C: ", "line L: " without a column), or nothing
        when it is unknown."""
        if self.line is None:
            return ""
        return f"line {self.line}: " if self.column is None else f"line {self.line}, column {self.column}: "


class MeasuredLoader(yaml.SafeLoader):
    """PyYAML's safe loader, measuring the document as it composes it and refusing it (`YamlRefused`) as soon as it
    nests too deep or grows too big, counting every alias as the nodes it stands for.

    Composing never copies an aliased node, so the counts are cheap and nothing has been expanded when a document
    is refused; the alias ratio is checked once the whole document is known (`check_aliases`)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.written = 0  # nodes in the text
        self.expanded = 0  # nodes with every alias replaced by what it names: what the diff and the report walk
        self._aliased = False
        self._depth = 0  # collections around the node being composed
        self._reached = 0  # the deepest level reached inside it, aliases expanded
        # id(anchored node) -> (its size, its levels of collections), aliases expanded, once the node is complete
        self._sizes: dict[int, tuple[int, int]] = {}

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        self._refuse_repeated_keys(node)
        return node

    def _refuse_repeated_keys(self, node: yaml.MappingNode) -> None:
        """A key written twice in one mapping (`YamlRefused` at the second). Keys compare as the loaded mapping
        would hold them (`1` and `0x1` are one key, and so are `1`, `1.0` and `true`: the second would silently
        replace the first), an alias of a key as the key it names; merge keys (`<<`) and keys that are collections
        are left to the loader. The message shows the key as written."""
        first: dict[Any, Any] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            try:
                earlier = first.get(key)
                if earlier is None:
                    first[key] = key_node
                    continue
            except TypeError:  # not hashable: the constructor says so later
                continue
            line = key_node.start_mark.line + 1
            before = earlier.start_mark.line + 1
            if earlier is key_node:  # an alias of the key: the node, and its place, are the anchored one's
                raise YamlRefused(f"key {key_node.value[:100]!r} repeated through an alias (*)", line)
            at = "on the same line" if before == line else f"at line {before}"
            raise YamlRefused(f"key {key_node.value[:100]!r} repeated (first {at})", line)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            known = self._sizes.get(id(node))
            if known is None:  # its anchor is still open: the alias is inside the node it names
                raise self._refused("a YAML alias inside the node it names (a cycle): not loaded", event)
            size, levels = known
            self._aliased = True
            self._nest(self._depth + levels, event)  # aliases wrapping aliases nest deeper than the text does
            self._grow(size, event)
            return node
        collection = isinstance(event, yaml.CollectionStartEvent)
        if collection:
            self._depth += 1
            self._nest(self._depth, event)
        self.written += 1
        start, outer, self._reached = self.expanded, self._reached, self._depth
        self._grow(1, event)
        node = super().compose_node(parent, index)
        if event.anchor is not None:  # only an anchored node can be aliased; it stays alive, so its id is not reused
            self._sizes[id(node)] = (self.expanded - start, self._reached - self._depth + collection)
        if collection:
            self._depth -= 1
        self._reached = max(outer, self._reached)
        return node

    @staticmethod
    def _refused(message: str, event: Any) -> YamlRefused:
        mark = getattr(event, "start_mark", None)
        if mark is None:
            return YamlRefused(message)
        return YamlRefused(message, mark.line + 1, mark.column + 1)

    def _nest(self, depth: int, event: Any) -> None:
        self._reached = max(self._reached, depth)
        if depth > MAX_NESTING:
            raise self._refused(f"nested deeper than {MAX_NESTING} levels: not loaded", event)

    def _grow(self, nodes: int, event: Any) -> None:
        self.expanded += nodes
        if self.expanded > MAX_DOCUMENT_NODES:
            how = " with its YAML aliases expanded" if self._aliased else ""
            raise self._refused(f"over {MAX_DOCUMENT_NODES:,} nodes{how}: not loaded", event)

    def check_aliases(self) -> None:
        """Refuse a document its aliases multiply more than MAX_ALIAS_EXPANSION-fold."""
        if self.expanded > MAX_ALIAS_EXPANSION * self.written:
            raise YamlRefused(
                f"YAML aliases expand its {self.written:,} nodes to {self.expanded:,}, over the "
                f"{MAX_ALIAS_EXPANSION}-fold limit: not loaded"
            )


def load_measured(text: str, *, alias_ratio: bool = True) -> Any:
    """The one document of `text`, as `yaml.safe_load` builds it, once `MeasuredLoader` has measured it (None when
    empty). Raises `YamlRefused` or `yaml.YAMLError` (more than one document is a YAMLError, as in safe_load).

    `alias_ratio=False` leaves out the MAX_ALIAS_EXPANSION check, for a file read alone (the operator's settings):
    there one anchor shared by many entries is the point of it, and MAX_DOCUMENT_NODES still bounds the whole."""
    loader = MeasuredLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if alias_ratio:
            loader.check_aliases()
        return loader.construct_document(node)
    except RecursionError:  # the depth is checked as the document is composed; this is the net under it
        raise YamlRefused(f"nested deeper than {MAX_NESTING} levels: not loaded") from None
    finally:
        loader.dispose()
