"""The README's findings section: rewrite what lies between the findings markers from the published reports.

Each published report folder (``reports/<campaign_id>/``) carries ``report.json``, the findings the report
itself shows, as numbers (harness/report/findings.py formats them). The section gets one row per preset, from that preset's latest campaign. Only the text between
the markers changes (byte for byte, everything else stays), and the same reports give the same text, so
running it twice changes nothing the second time.

A campaign run from a tree with uncommitted changes (our commit "-dirty") is not published unless asked
(``allow_dirty``, the verb's --allow-dirty): its figures may not reproduce from the named commit. A dirty
campaign the findings already show was published that way before, so keeping it needs no new consent; its row
says "-dirty" and a note under the table says what that means.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness.report import findings as findings_record
from harness.report.markdown import href, md_cell
from protocol.files import write_text_atomic

START = "<!-- findings:start -->"
END = "<!-- findings:end -->"
COLUMNS = ["preset", "machine", "ours / upstream commit", "tokens/s ours ÷ upstream [95 % CI]",
           "peak memory ours ÷ upstream [95 % CI]", "final val BPB ours / upstream", "BPB parity", "report"]


class ReadmeError(ValueError):
    """A README or reports folder the findings updater cannot use."""


DIRTY_NOTE = ("\"-dirty\": the campaign ran from a tree with uncommitted changes, so its figures may not reproduce "
              "from that commit (published with --allow-dirty).")


def latest_findings(reports_dir: str | Path) -> list[tuple[Path, dict]]:
    """(report folder, findings) of the newest ours-vs-upstream campaign of each preset, presets in name order (a
    published campaign of other arms, e.g. the bf16 worked example of docs/protocol.md, has its own report but no
    row under columns that say ours ÷ upstream)."""
    if not Path(reports_dir).is_dir():
        raise ReadmeError(f"--reports {reports_dir}: no such folder; pass the folder that holds the published "
                          f"reports (reports/<campaign_id>/report.json)")
    latest: dict[str, tuple[Path, dict]] = {}
    for path in sorted(Path(reports_dir).glob("*/report.json")):
        try:
            findings = findings_record.read(path)
        except findings_record.FindingsError as e:
            raise ReadmeError(str(e)) from None
        if (findings.get("baseline"), findings.get("candidate")) not in ((None, None), ("upstream", "ours")):
            continue
        key = (findings.get("created") or "", findings.get("campaign_id") or "")
        best = latest.get(findings["preset"])
        if best is None or key > (best[1].get("created") or "", best[1].get("campaign_id") or ""):
            latest[findings["preset"]] = (path.parent, findings)
    return [latest[p] for p in sorted(latest)]


def findings_block(rows: list[tuple[Path, dict]], readme_dir: Path) -> str:
    """The Markdown that goes between the markers (a leading and trailing newline included)."""
    if not rows:
        return "\nNo published campaign yet: render one with `nanochat-bench report CAMPAIGN --out reports/ID`.\n"
    lines = ["", "| " + " | ".join(COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for folder, raw in rows:
        f = findings_record.cells(raw)
        link = href(Path(os.path.relpath(folder / f["report"], readme_dir)).as_posix())
        cells = [f["preset"], f["machine"], f"{f['ours_sha']} / {f['upstream_sha']}", f["tokens_per_s"],
                 f["peak_memory"], f"{f['final_bpb_ours']} / {f['final_bpb_upstream']}", f["bpb_parity"]]
        lines.append("| " + " | ".join([*map(md_cell, cells), f"[{md_cell(f['campaign_id'])}]({link})"]) + " |")
    lines.append("")
    if any(raw.get("ours_dirty") for _, raw in rows):
        lines += [DIRTY_NOTE, ""]
    lines.append("Ratios are ours ÷ upstream over repeats: a 95 % CI (t-interval on the paired log-ratios of "
                 "the rounds, 3 or more), else the range of observed ratios, marked \"range\"; older reports: bootstrap "
                 "CI, \"~\" = not significant or within the practical threshold.")
    return "\n".join(lines) + "\n"


def replace_section(text: str, block: str, name: str = "README.md") -> str:
    """``text`` with everything between the markers replaced by ``block``; one-line error if they are wrong."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise ReadmeError(f"{name}: needs exactly one {START} and one {END} line (found {text.count(START)} and "
                          f"{text.count(END)}); add them under a '## Findings' heading")
    head, rest = text.split(START)
    if END not in rest:
        raise ReadmeError(f"{name}: {END} comes before {START}; put the start marker first")
    _, tail = rest.split(END)
    return head + START + block + END + tail


def check_clean(rows: list[tuple[Path, dict]], current: str, allow_dirty: bool) -> None:
    """ReadmeError naming the first campaign run from a dirty tree that the findings do not show yet, unless
    ``allow_dirty``."""
    if allow_dirty:
        return
    shown = current.split(START, 1)[-1].split(END, 1)[0] if START in current else ""
    for folder, raw in rows:
        if raw.get("ours_dirty") and f"[{raw['campaign_id']}](" not in shown:
            raise ReadmeError(f"{folder}: campaign {raw['campaign_id']} ran from a dirty tree "
                              f"({findings_record.cells(raw)['ours_sha']}); re-run it from a clean checkout, or pass "
                              f"--allow-dirty to publish it marked as such")


def update_readme(readme: str | Path, reports_dir: str | Path, allow_dirty: bool = False) -> bool:
    """Rewrite the findings section of ``readme`` from ``reports_dir``; True if the file changed. A campaign run
    from a dirty tree that the findings do not show yet is refused (ReadmeError) unless ``allow_dirty``."""
    readme = Path(readme)
    if not readme.is_file():
        raise ReadmeError(f"{readme}: no such file; pass the README to update with --readme")
    old = readme.read_bytes().decode("utf-8")
    rows = latest_findings(reports_dir)
    check_clean(rows, old, allow_dirty)
    new = replace_section(old, findings_block(rows, readme.resolve().parent), str(readme))
    if new == old:
        return False
    write_text_atomic(readme, new)
    return True
