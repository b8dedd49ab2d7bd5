"""Throughput charts as inline SVG, drawn on the server: no chart library, no script.

Each bucket is a bar of succeeded jobs with the failed ones stacked on top; hovering a bar
shows its numbers (an SVG ``<title>``). Only numbers and formatted times reach the markup,
and those are escaped anyway.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from html import escape

from markupsafe import Markup

from pgq.web.queries import Bucket

WIDTH = 600
HEIGHT = 140
AXIS = 18  # pixels under the bars for the time labels
TOP = 14  # pixels above the bars for the scale label


def bar_chart(buckets: Sequence[Bucket], *, label: str, time_format: str) -> Markup:
    """An SVG bar chart of ``buckets`` (oldest first), titled ``label`` for screen readers;
    ``time_format`` (strftime) labels the first, middle and last bucket."""
    peak = max((b.succeeded + b.failed for b in buckets), default=0)
    scale = (HEIGHT - AXIS - TOP) / peak if peak else 0.0
    step = WIDTH / max(len(buckets), 1)
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" preserveAspectRatio="none">',
        f'<text class="scale" x="2" y="10">max {peak:,} per bar</text>',
    ]
    base = HEIGHT - AXIS
    for index, bucket in enumerate(buckets):
        x = index * step + 1
        ok_h = bucket.succeeded * scale
        fail_h = bucket.failed * scale
        when = bucket.start.astimezone(UTC).strftime(time_format)
        title = f"{when}: {bucket.succeeded:,} succeeded, {bucket.failed:,} failed"
        parts.append(f"<g><title>{escape(title)}</title>")
        parts.append(
            f'<rect class="ok" x="{x:.1f}" y="{base - ok_h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{ok_h:.1f}"/>'
        )
        parts.append(
            f'<rect class="fail" x="{x:.1f}" y="{base - ok_h - fail_h:.1f}" '
            f'width="{max(step - 2, 1):.1f}" height="{fail_h:.1f}"/>'
        )
        parts.append("</g>")
    parts.append(f'<line class="axis" x1="0" y1="{base}" x2="{WIDTH}" y2="{base}"/>')
    parts += _time_labels(buckets, step, time_format)
    parts.append("</svg>")
    return Markup("".join(parts))


def _time_labels(buckets: Sequence[Bucket], step: float, time_format: str) -> list[str]:
    if not buckets:
        return []
    picks = {0: "start", len(buckets) // 2: "middle", len(buckets) - 1: "end"}
    labels = []
    for index, anchor in picks.items():
        x = index * step + (step / 2 if anchor == "middle" else 0 if anchor == "start" else step)
        text = escape(buckets[index].start.astimezone(UTC).strftime(time_format))
        labels.append(
            f'<text class="time" x="{x:.1f}" y="{HEIGHT - 4}" text-anchor="{anchor}">{text}</text>'
        )
    return labels
