"""Untrusted text made inert in Markdown (GitHub-flavoured): what report.md and the README findings put around
a run's error, an arm's name, a command line, a git ref or a log.

Text from result.json, campaign.json or an arm's output is data, never markup: it cannot open a code span, a
link, an HTML tag, a table cell or a new block. Escapes are the few that do that (backslash, backtick, ``<``,
``>``, ``&`` of an entity, ``](`` of a link, a block marker at the start; a pipe in a table cell), so the raw file still reads
like text. HTML is escaped by Jinja2's autoescape (harness/report/render.py); SVG text by matplotlib.
"""
from __future__ import annotations

import re
from urllib.parse import quote

_INLINE = re.compile(r"([\\`])")
_ENTITY = re.compile(r"&(?=#?\w+;)")
_BLOCK_START = re.compile(r"^(\s*)([#>+\-*=_~:\[]|\d+[.)])")


def md_text(value: object) -> str:
    """One line of inline text: line breaks become spaces, nothing in it is markup."""
    text = " ".join(str(value).splitlines())
    text = _ENTITY.sub("&amp;", text).replace("<", "&lt;").replace(">", "&gt;")
    return _INLINE.sub(r"\\\1", text).replace("](", "\\](")


def md_block(value: object) -> str:
    """``md_text`` for a value that starts a line: it cannot start a heading, list, quote, rule or table."""
    def escape(m: re.Match) -> str:
        mark = m.group(2)
        return f"{m.group(1)}{mark[:-1]}\\{mark[-1]}"      # "\# x", "1\. x"
    return _BLOCK_START.sub(escape, md_text(value), count=1)


def md_cell(value: object) -> str:
    """A table cell: ``md_text`` per line, pipes escaped, the lines joined with <br>."""
    lines = str(value).splitlines() or [""]
    return "<br>".join(md_text(line).replace("|", "\\|") for line in lines)


def md_fence(text: object, info: str = "text") -> str:
    """A fenced code block around ``text`` whose fence is longer than any backtick run inside, so it cannot close
    early (the content is shown literally, HTML tags included)."""
    text = str(text)
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{info}\n{text}\n{fence}"


def href(path: str) -> str:
    """A relative link target: percent-encoded, so no ``:`` can make it a scheme (javascript:) and no space or
    parenthesis can end it."""
    return quote(path, safe="/")
