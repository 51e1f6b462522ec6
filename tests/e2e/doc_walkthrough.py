"""Read a walk-through in Markdown (docs/api.md) and check a run of it against what the page shows.

The page is a sequence of fenced blocks:

- ```bash: commands, run in order in one shell (variables and functions carry over);
- ```json or a bare ```: what the preceding `bash` block prints, one or more JSON values, or lines of text;
- ```console: the terminal that runs `timecredits up`: `$ ...` is what the reader types, `^C` is Ctrl-C, every
  other line is a line `up` prints.

An expected value may hold placeholders for what is new on every run: `<uuid>`, `<token>`, `<volunteer-id>`,
`<timestamp>`, `<port>`, `<pid>`, `<path>`, `<hex>`, `<elapsed>`, `<count>` (a number that depends on
how the events fell into batches). A named one, `<uuid:log>`, must stand for the
same value wherever that name appears on the page. Everything else must match exactly.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

PLACEHOLDER_SHAPES = {
    "uuid": r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
    "token": r"tc_[A-Za-z0-9_-]{43}",
    "volunteer-id": r"v-[0-9a-f]{12}",
    "timestamp": r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})",
    "port": r"[0-9]{1,5}",
    "pid": r"[0-9]+",
    "path": r"\S+",
    "hex": r"[0-9a-f]+",
    "elapsed": r"[0-9]+:[0-9]{2}:[0-9]{2}",
    "count": r"[0-9]+",
}
_PLACEHOLDER = re.compile(r"<([a-z-]+)(?::([a-z0-9_-]+))?>")
_FENCE = re.compile(r"^```([a-z]*)\s*$")


@dataclass
class Block:
    lang: str  # "bash", "json", "console" or "" (plain text)
    text: str
    line: int  # where it starts in the page, for messages


@dataclass
class Step:
    """A `bash` block and the outputs the page shows after it."""

    command: Block
    outputs: list[Block] = field(default_factory=list)


def blocks(markdown: str) -> list[Block]:
    found: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].rstrip() != "```":
            body.append(lines[i])
            i += 1
        found.append(Block(match[1], "\n".join(body), start + 1))
        i += 1
    return found


def steps(markdown: str) -> list[Step]:
    """The `bash` blocks, each with the `json` and plain blocks that follow it."""
    result: list[Step] = []
    for block in blocks(markdown):
        if block.lang == "bash":
            result.append(Step(block))
        elif block.lang in ("json", "") and result:
            result[-1].outputs.append(block)
    return result


def console_blocks(markdown: str) -> list[Block]:
    return [block for block in blocks(markdown) if block.lang == "console"]


class Mismatch(AssertionError):
    pass


class Matcher:
    """Compares actual output with the page's, keeping what each named placeholder stood for."""

    def __init__(self) -> None:
        self.bound: dict[str, str] = {}

    # -- text -----------------------------------------------------------------------------
    def _regex(self, template: str, *, loose_spaces: bool) -> tuple[re.Pattern[str], list[str | None]]:
        parts: list[str] = []
        names: list[str | None] = []
        last = 0
        for match in _PLACEHOLDER.finditer(template):
            kind, name = match[1], match[2]
            if kind not in PLACEHOLDER_SHAPES:
                continue  # angle brackets that are not a placeholder
            parts.append(self._literal(template[last:match.start()], loose_spaces))
            parts.append(f"({PLACEHOLDER_SHAPES[kind]})")
            names.append(f"{kind}:{name}" if name else None)
            last = match.end()
        parts.append(self._literal(template[last:], loose_spaces))
        return re.compile("".join(parts)), names

    @staticmethod
    def _literal(text: str, loose_spaces: bool) -> str:
        if not loose_spaces:
            return re.escape(text)
        return r"\s+".join(re.escape(word) for word in re.split(r"\s+", text))

    def match_string(self, template: str, actual: str, *, loose_spaces: bool = False, search: bool = False) -> bool:
        pattern, names = self._regex(template, loose_spaces=loose_spaces)
        found = pattern.search(actual) if search else pattern.fullmatch(actual)
        if found is None:
            return False
        proposed = dict(self.bound)
        for name, value in zip(names, found.groups()):
            if name is None:
                continue
            if proposed.setdefault(name, value) != value:
                return False
        self.bound = proposed
        return True

    def lines_in_order(self, templates: list[str], actual_lines: list[str], what: str) -> None:
        """Every template line matches a line of the output, in order (other output lines may come between)."""
        position = 0
        for template in templates:
            if not template.strip():
                continue
            while position < len(actual_lines):
                line = actual_lines[position]
                position += 1
                if self.match_string(template.strip(), line.strip(), loose_spaces=True):
                    break
            else:
                raise Mismatch(f"{what}: no line matching {template!r} (in order) in:\n" + "\n".join(actual_lines))

    # -- JSON -----------------------------------------------------------------------------
    def json_values(self, expected: Any, actual: Any, path: str = "$") -> None:
        if isinstance(expected, str) and isinstance(actual, str):
            if not self.match_string(expected, actual):
                raise Mismatch(f"{path}: expected {expected!r}, got {actual!r}")
            return
        if isinstance(expected, dict) and isinstance(actual, dict):
            if expected.keys() != actual.keys():
                raise Mismatch(f"{path}: keys {sorted(expected)} expected, got {sorted(actual)}")
            for key in expected:
                self.json_values(expected[key], actual[key], f"{path}.{key}")
            return
        if isinstance(expected, list) and isinstance(actual, list):
            if len(expected) != len(actual):
                raise Mismatch(f"{path}: {len(expected)} items expected, got {len(actual)}: {actual!r}")
            for n, (want, got) in enumerate(zip(expected, actual)):
                self.json_values(want, got, f"{path}[{n}]")
            return
        if type(expected) is not type(actual) or expected != actual:
            raise Mismatch(f"{path}: expected {expected!r}, got {actual!r}")


def json_sequence(text: str) -> list[Any]:
    """The JSON values of a text, one after another (as `jq` prints them)."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    text = text.strip()
    while position < len(text):
        value, end = decoder.raw_decode(text, position)
        values.append(value)
        position = end
        while position < len(text) and text[position].isspace():
            position += 1
    return values


def check_output(matcher: Matcher, block: Block, actual: str) -> None:
    """The output of a step against one expected block (JSON values, or lines of text)."""
    where = f"the block at line {block.line}"
    if block.lang == "json":
        expected = json_sequence(block.text)
        try:
            got = json_sequence(actual)
        except json.JSONDecodeError as exc:
            raise Mismatch(f"{where}: the output is not JSON ({exc}):\n{actual}") from exc
        if len(expected) != len(got):
            raise Mismatch(f"{where}: {len(expected)} JSON values expected, got {len(got)}:\n{actual}")
        for n, (want, value) in enumerate(zip(expected, got)):
            try:
                matcher.json_values(want, value)
            except Mismatch as exc:
                raise Mismatch(f"{where}, value {n + 1}: {exc}\nwhole output:\n{actual}") from exc
    else:
        matcher.lines_in_order(block.text.splitlines(), actual.splitlines(), where)
