"""Markdown pieces of `experiments/tables.py`: tables, number formats, where a record comes
from, and sentences that compare one method with others from the numbers alone (so that a
rerun cannot leave a claim behind that its JSON contradicts).
"""

from __future__ import annotations


def row(cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def table(header, rows) -> str:
    return "\n".join([row(header), row(["---"] * len(header))] + [row(r) for r in rows])


def pct(ratio: float) -> str:
    """`0.25 -> "25%"`."""
    return f"{100 * float(ratio):g}%"


def listing(items) -> str:
    """`a`, `a and b`, `a, b and c`."""
    items = [str(i) for i in items]
    return " and ".join(items) if len(items) < 3 else ", ".join(items[:-1]) + " and " + items[-1]


def spread(s: dict, digits: int = 2) -> str:
    """A `{"median", "min", "max"}` spread: `median (min-max)`."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}-{s['max']:.{digits}f})"


def ci(pair, digits: int = 2) -> str:
    """An interval: `0.62 to 0.96`."""
    return f"{pair[0]:.{digits}f} to {pair[1]:.{digits}f}"


def signed(pair) -> str:
    """An interval that may cross zero: `[-0.012, +0.034]`."""
    return f"[{pair[0]:+.3f}, {pair[1]:+.3f}]"


def seconds(x: float) -> str:
    return f"{x:.3g} s"


def kept(value: float, count) -> str:
    """A quality figure with the tokens kept beside it: `0.965 [568 kept]`."""
    return f"{value:.3f} [{count:.0f} kept]"


def provenance(record: dict) -> str:
    """One line: the command, the commit (and whether the tree was clean), date, machine."""
    m = record["machine"]
    commit = f"commit `{m['commit'][:12]}`" if m.get("commit") else "no git commit"
    state = {False: "clean tree", True: "uncommitted changes", None: "tree state unknown"}[
        m.get("dirty")]
    load = m.get("load_average") or [None]
    end = (m.get("load_average_end") or [None])[0]
    loads = f", load {load[0]:.1f}" + (f" to {end:.1f}" if end is not None else "") \
        if load[0] is not None else ""
    smoke = " **(smoke run: not results)**" if record.get("smoke") else ""
    return (f"`{record['command']}`{smoke}: {commit} ({state}), {m['date_utc'][:10]}, "
            f"{m['cpu_count']} x {m['cpu']} ({m['backend']}{loads}), jax {m['jax']}.")


def compare(data: dict, ours: str, others, *, higher: bool, show) -> str:
    """Where `ours` beats each of `others` and where it loses, ratio by ratio.

    Args:
      data: `{method: {ratio: (value, extra)}}`, ratios as floats, the same for every method.
      higher: whether a higher value is better.
      show: `(value, extra) -> str` for one figure.
    Returns:
      Clauses joined by semicolons: methods `ours` beats at every ratio, loses to at every
      ratio, and the mixed ones with their ratios; each with its figures at the lowest ratio
      of its outcome (`ours` first). Values equal at the shown precision are ties.
    """
    ratios = sorted(data[ours], reverse=True)

    def at(method, ratio):
        return show(*data[method][ratio])

    def example(method, ratios_):
        r = min(ratios_)
        return f"at {pct(r)}: {at(ours, r)} against {at(method, r)}"

    groups = {"beats": [], "loses to": [], "ties": [], "mixed": []}
    for other in others:
        wins, losses = [], []
        for r in ratios:
            a, b = at(ours, r), at(other, r)
            if a.split()[0] != b.split()[0]:
                better = data[ours][r][0] > data[other][r][0]
                (wins if better == higher else losses).append(r)
        if wins and not losses:
            groups["beats" if len(wins) == len(ratios) else "mixed"].append((other, wins, losses))
        elif losses and not wins:
            groups["loses to" if len(losses) == len(ratios) else "mixed"].append(
                (other, wins, losses))
        elif not wins and not losses:
            groups["ties"].append((other, wins, losses))
        else:
            groups["mixed"].append((other, wins, losses))
    clauses = []
    for verb in ("beats", "loses to"):
        if groups[verb]:
            items = [f"{o} ({example(o, w or l)})" for o, w, l in groups[verb]]
            clauses.append(f"{verb} {listing(items)} at every ratio")
    if groups["ties"]:
        clauses.append(f"ties {listing(o for o, _, _ in groups['ties'])} at every ratio")
    for other, wins, losses in groups["mixed"]:
        parts = []
        if wins:
            parts.append(f"beats it at {listing(map(pct, wins))} ({example(other, wins)})")
        if losses:
            parts.append(f"loses at {listing(map(pct, losses))} ({example(other, losses)})")
        rest = [r for r in ratios if r not in wins and r not in losses]
        if rest:
            parts.append(f"ties at {listing(map(pct, rest))}")
        clauses.append(f"against {other}: {listing(parts)}")
    return "; ".join(clauses)


# The quality metrics of real_clips and ablations: column names and cells.
QUALITY = {"mass_enrichment": "mass/share", "coverage_tfs": "coverage (TFS segments)",
           "coverage_chunks": "coverage (equal chunks)"}


def quality_cells(r: dict) -> list[str]:
    return [f"{r['tokens_kept']:.0f}"] + [f"{r[k]:.3f}" if k in r else "-" for k in QUALITY]
