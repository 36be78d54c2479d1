"""A suite's history as one self-contained HTML page: inline SVG charts, no scripts, opens offline."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..errors import HistoryError
from .history import ERROR, Record, flag_kind

__all__ = ["render_page", "write_page"]

#: In the head of every page: a file there without it is the user's, never replaced.
GENERATOR = '<meta name="generator" content="gradcheck history">'
#: How pages began before the generator tag; the CLI's title is always the default.
_EARLIER = '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>gradcheck history</title><style>'

_WIDTH, _HEIGHT, _PAD = 640, 220, 48
_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 720px; color: #222; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 2em; }
.ok { color: #1a7f37; } .bad { color: #c62828; font-weight: bold; } .flag { color: #b45309; }
svg { background: #fafafa; border: 1px solid #ddd; margin: .5em 0; }
svg text { font-size: 11px; fill: #444; } .threshold { stroke: #c62828; stroke-dasharray: 4 3; }
.bar { fill: #4a78c2; } .bar.wrong { fill: #c62828; } .line { fill: none; stroke: #4a78c2; stroke-width: 2; }
.dot { fill: #4a78c2; } .dot.flagged { fill: #b45309; } .dot.bad { fill: #c62828; }
"""


def _log_scale(values: Sequence[float]) -> tuple[float, float]:
    """Whole decades around the finite positive values (and the threshold)."""
    logs = [math.log10(v) for v in values if math.isfinite(v) and v > 0] or [0.0]
    low, high = math.floor(min(logs)), math.ceil(max(logs))
    return (low, high) if high > low else (low - 1, high + 1)


def _y(value: float, low: float, high: float, log: bool) -> float:
    """The SVG y of ``value`` on an axis from ``low`` to ``high`` (decades when ``log``)."""
    position = (math.log10(max(value, 10**low)) - low) / (high - low) if log else (value - low) / (high - low)
    return _HEIGHT - _PAD - position * (_HEIGHT - 2 * _PAD)


def _axis(low: float, high: float, log: bool, title: str) -> list[str]:
    parts = [f'<text x="4" y="14">{html.escape(title)}</text>']
    ticks = range(int(low), int(high) + 1) if log else [low, (low + high) / 2, high]
    for tick in ticks:
        y = _y(10.0**tick if log else tick, low, high, log)
        label = f"1e{tick}" if log else f"{tick:.3g}"
        parts.append(f'<line x1="{_PAD}" x2="{_WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="4" y="{y + 4:.1f}">{label}</text>')
    return parts


def _threshold(value: float | None, low: float, high: float) -> str:
    if value is None:
        return ""
    y = _y(value, low, high, True)
    return (
        f'<line class="threshold" x1="{_PAD}" x2="{_WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>'
        f'<text x="{_WIDTH - 120}" y="{y - 4:.1f}">threshold {value:g}</text>'
    )


def _svg(parts: list[str], label: str) -> str:
    body = "".join(parts)
    return f'<svg role="img" aria-label="{html.escape(label)}" width="{_WIDTH}" height="{_HEIGHT}" viewBox="0 0 {_WIDTH} {_HEIGHT}">{body}</svg>'


def _given(threshold: float | None) -> list[float]:
    return [] if threshold is None else [threshold]


def tensor_chart(record: Record) -> str:
    """The latest run's per-tensor differences, log scale, with the threshold."""
    values = [t["difference"] if t["difference"] is not None else math.nan for t in record.tensors]
    low, high = _log_scale([*values, *_given(record.threshold)])
    parts = _axis(low, high, True, "per-tensor difference (log scale); red: wrong tensor")
    step = (_WIDTH - _PAD - 8) / max(1, len(values))
    for k, (tensor, value) in enumerate(zip(record.tensors, values, strict=True)):
        x = _PAD + k * step + step * 0.15
        y = _y(value, low, high, True) if math.isfinite(value) else _PAD
        height = _HEIGHT - _PAD - y
        css = "bar" if tensor["passed"] else "bar wrong"
        name = html.escape(str(tensor["name"]))
        parts.append(
            f'<rect class="{css}" x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{height:.1f}">'
            f"<title>{name}: {value:.3e}</title></rect>"
        )
        parts.append(f'<text x="{x:.1f}" y="{_HEIGHT - _PAD + 14}">{name[:12]}</text>')
    parts.append(_threshold(record.threshold, low, high))
    return _svg(parts, f"per-tensor differences of {record.check}")


def trend_chart(records: Sequence[Record], *, wall: bool) -> str:
    """A check's difference (log scale, with the threshold) or wall time over its runs."""
    # an error's wall time is no run's (drift leaves it out too), and it has no threshold (review 93)
    values = [math.nan if r.outcome == ERROR else r.wall_seconds if wall else r.difference for r in records]
    threshold = next((r.threshold for r in reversed(records) if r.outcome != ERROR), None)
    if wall:
        finite = [v for v in values if math.isfinite(v)] or [0.0]
        low, high, log = 0.0, max(finite) * 1.1 or 1.0, False
        title = "wall time, seconds, per run; orange: regression flagged"
    else:
        low, high = _log_scale([*values, *_given(threshold)])
        log, title = True, "difference per run (log scale); orange: drift flagged, red: unexpected verdict"
    parts = _axis(low, high, log, title)
    step = (_WIDTH - _PAD - 16) / max(1, len(values) - 1)
    points = []
    for k, (record, value) in enumerate(zip(records, values, strict=True)):
        if not math.isfinite(value):
            continue
        x, y = _PAD + 8 + k * step, _y(value, low, high, log)
        points.append(f"{x:.1f},{y:.1f}")
        flagged = any(flag_kind(flag) == ("wall" if wall else "difference") for flag in record.flags)
        css = "dot bad" if not record.ok else ("dot flagged" if flagged else "dot")
        parts.append(
            f'<circle class="{css}" cx="{x:.1f}" cy="{y:.1f}" r="4"><title>{html.escape(record.time[:19])}: '
            f"{value:.3e}</title></circle>"
        )
    if len(points) > 1:
        parts.insert(len(parts) - len(points), f'<polyline class="line" points="{" ".join(points)}"/>')
    if not wall:
        parts.append(_threshold(threshold, low, high))
    return _svg(parts, f"{'wall time' if wall else 'difference'} of {records[-1].check} over time")


def render_page(history: Mapping[str, Sequence[Record]], title: str = "gradcheck history") -> str:
    """The page: per check, the latest run's tensors and the trends of difference and wall time."""
    sections = []
    for check, records in sorted(history.items()):
        latest = records[-1]
        verdict = (
            f'<span class="ok">{latest.outcome}, as expected</span>'
            if latest.ok
            else f'<span class="bad">{latest.outcome}, expected to {latest.expect}</span>'
        )
        flags = "".join(f'<li class="flag">{html.escape(flag)}</li>' for flag in latest.flags)
        if latest.error:  # no verdict: why, in place of the flags
            flags = f'<li class="bad">{html.escape(latest.error)}</li>'
        sections.append(
            f"<section><h2>{html.escape(check)}</h2>"
            f"<p>Latest run {html.escape(latest.time[:19].replace('T', ' '))} UTC: {verdict}, difference "
            f"{latest.difference:.3e} (threshold {'none' if latest.threshold is None else f'{latest.threshold:g}'}), {latest.wall_seconds:.2f} s, "
            f"{len(records)} run(s) recorded.</p>"
            + (f"<ul>{flags}</ul>" if flags else "")
            + tensor_chart(latest)
            + trend_chart(records, wall=False)
            + trend_chart(records, wall=True)
            + "</section>"
        )
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">{GENERATOR}<title>{html.escape(title)}</title>'
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(sections)}</body></html>\n"
    )


def write_page(path: str, history: Mapping[str, Sequence[Record]]) -> None:
    """The page written to ``path`` whole (beside it, then renamed), replacing only a page written before.

    Raises
    ------
    HistoryError
        ``path`` is a folder, its folder does not exist, or a file there is not such a page (it is kept).
    """
    target = Path(path)
    if target.is_dir():
        raise HistoryError(f"--html '{path}' is a folder: name a file, such as '{target / 'index.html'}'.")
    if not target.parent.is_dir():
        raise HistoryError(f"--html '{path}': its folder '{target.parent}' does not exist.")
    if target.exists():
        with open(target, "rb") as f:
            head = f.read(len(_EARLIER) + len(GENERATOR)).decode("utf-8", "replace")
        if GENERATOR not in head and not head.startswith(_EARLIER):
            raise HistoryError(
                f"--html '{path}' exists and is not a page `gradcheck history` wrote: it is kept. Name another "
                "file, or remove it first."
            )
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(render_page(history), encoding="utf-8")
    partial.replace(target)
