"""Geometry of the operations view's charts: scales, bars, lines and ticks, in SVG user units.

The templates (templates/ops/) draw them as inline SVG; colours come from the stylesheet's
custom properties through classes, so a chart follows the light and dark themes. Nothing here
builds markup: every number and label is handed to a template, which escapes the labels.
Coordinates are handed over as text (`units`): a template would localize each float, which cost
more than the rest of the page for a week of hourly bars.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime


def units(value: float) -> str:
    """A coordinate as SVG attribute text: at most two decimals, no trailing zeros."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class Tick:
    at: str  # x or y, in user units
    label: str
    anchor: str = "middle"  # an x tick's label near an edge reads inwards (start / end)


@dataclass(frozen=True)
class Segment:
    kind: str  # the series (a CSS class suffix)
    y: str
    height: str


@dataclass
class Bar:
    x: str
    width: str
    title: str  # what a pointer resting on the bar reads
    segments: list[Segment] = field(default_factory=list)


@dataclass
class Line:
    kind: str
    path: str  # SVG path data; a gap where a value is missing
    points: list[tuple[str, str, str]]  # (x, y, title) of each value, for markers


@dataclass
class Marker:
    """A vertical rule across the plot (a percentile on the histogram), labelled above it."""

    kind: str
    x: str
    label: str
    anchor: str = "end"  # the label reads leftwards of the rule ("end") or rightwards ("start")
    dx: str = "-4"
    label_y: str = ""


@dataclass
class Chart:
    width: int
    plot_width: float
    plot_height: float
    y_ticks: list[Tick]
    x_ticks: list[Tick] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    markers: list[Marker] = field(default_factory=list)
    # Fixed lines of the frame, as text like every coordinate.
    height: str = ""
    left: str = ""
    top: str = ""
    right: str = ""
    bottom: str = ""
    tick_end: str = ""  # where an x tick's mark ends below the axis
    axis_label_x: str = ""  # the y labels' right edge
    x_label_y: str = ""  # the x labels' baseline
    plot_span: str = ""  # the plot's height (a bar's hover area spans it)

    def __post_init__(self) -> None:
        bottom = TOP + self.plot_height
        self.height, self.left, self.top = units(HEIGHT), units(LEFT), units(TOP)
        self.right, self.bottom = units(LEFT + self.plot_width), units(bottom)
        self.tick_end, self.axis_label_x = units(bottom + 4), units(LEFT - 6)
        self.x_label_y = units(HEIGHT - 6)
        self.plot_span = units(self.plot_height)


# A chart's user units match its drawn size on a desktop screen (a full-width panel is WIDE, a
# half-width one NARROW), so its text reads at the stylesheet's size; smaller screens scale it.
WIDE, NARROW, HEIGHT = 1200, 560, 210
LEFT, RIGHT, TOP, BOTTOM = 44, 10, 20, 24


def nice_scale(largest: float, *, ticks: int = 4) -> tuple[float, float]:
    """(top, step) of an axis from 0 that holds `largest` in `ticks` round steps (1, 2, 2.5, 5 x 10^n)."""
    if largest <= 0:
        return float(ticks), 1.0
    raw = largest / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1, 2, 2.5, 5, 10):
        step = multiple * magnitude
        if step * ticks >= largest:
            return step * ticks, step
    return 10 * magnitude * ticks, 10 * magnitude


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _frame(y_top: float, y_step: float, fmt: Callable[[float], str]) -> tuple[float, list[Tick]]:
    """The plot's height and its y ticks from 0 to y_top."""
    plot_height = HEIGHT - TOP - BOTTOM
    ticks = []
    value = 0.0
    while value <= y_top + 1e-9:
        ticks.append(Tick(units(TOP + plot_height - plot_height * value / y_top), fmt(value)))
        value += y_step
    return plot_height, ticks


def _x_tick(x: float, label: str, left: float, right: float) -> Tick:
    anchor = "start" if x - left < 20 else "end" if right - x < 24 else "middle"
    return Tick(units(x), label, anchor)


def time_chart(
    starts: Sequence[datetime],
    *,
    stacks: dict[str, Sequence[float]],
    lines: dict[str, Sequence[float | None]],
    titles: Sequence[str],
    time_label: Callable[[datetime], str | None],
    y_format: Callable[[float], str] = _number,
    y_max: float | None = None,
    width: int = NARROW,
) -> Chart:
    """Bars stacked bottom-up in `stacks` order and lines over them, one slot per start time.

    `time_label(start)` names the x tick at a slot (None: no tick there); `titles` are the
    slots' tooltips. A None in a line is a gap.
    """
    n = len(starts)
    largest = max(
        [sum(values[i] for values in stacks.values()) for i in range(n)]
        + [v for values in lines.values() for v in values if v is not None]
        + [0]
    )
    y_top, y_step = nice_scale(y_max if y_max is not None else largest)
    plot_width = width - LEFT - RIGHT
    plot_height, y_ticks = _frame(y_top, y_step, y_format)
    slot = plot_width / max(n, 1)

    def y_of(value: float) -> float:
        return TOP + plot_height - plot_height * min(value, y_top) / y_top

    chart = Chart(width, plot_width, plot_height, y_ticks)
    for i, start in enumerate(starts):
        x = LEFT + i * slot
        label = time_label(start)
        if label is not None:
            chart.x_ticks.append(_x_tick(x, label, LEFT, LEFT + plot_width))
        if stacks:
            bar = Bar(x=units(x + slot * 0.15), width=units(max(slot * 0.7, 0.8)), title=titles[i])
            base = 0.0
            for kind, values in stacks.items():
                if values[i]:
                    top = y_of(base + values[i])
                    bar.segments.append(Segment(kind, units(top), units(y_of(base) - top)))
                    base += values[i]
            chart.bars.append(bar)
    for kind, values in lines.items():
        path, points, pen_down = [], [], False
        for i, value in enumerate(values):
            if value is None:
                pen_down = False
                continue
            x, y = units(LEFT + (i + 0.5) * slot), units(y_of(value))
            path.append(f"{'L' if pen_down else 'M'}{x},{y}")
            points.append((x, y, titles[i]))
            pen_down = True
        chart.lines.append(Line(kind, " ".join(path), points))
    return chart


def histogram_chart(
    counts: Sequence[int],
    bounds: Sequence[float],
    *,
    bound_label: Callable[[float], str],
    markers: dict[str, float | None],
    minimum_buckets: int = 10,
    width: int = NARROW,
) -> Chart:
    """Bars of `counts` per bucket (bucket i ends at bounds[i]; the last one is open-ended),
    from the first to the last non-empty bucket, with vertical markers at values (p50, p95)."""
    filled = [i for i, count in enumerate(counts) if count]
    first, last = (filled[0], filled[-1]) if filled else (0, 0)
    while last - first + 1 < minimum_buckets and (first > 0 or last < len(counts) - 1):
        if last < len(counts) - 1:
            last += 1
        if last - first + 1 < minimum_buckets and first > 0:
            first -= 1
    shown = range(first, last + 1)
    y_top, y_step = nice_scale(max([counts[i] for i in shown] + [0]))
    plot_width = width - LEFT - RIGHT
    plot_height, y_ticks = _frame(y_top, y_step, _number)
    slot = plot_width / len(shown)
    chart = Chart(width, plot_width, plot_height, y_ticks)
    every = max(1, math.ceil(len(shown) / 8))

    def low_of(i: int) -> float:
        return bounds[i - 1] if i else 0.0

    for n, i in enumerate(shown):
        x = LEFT + n * slot
        if n % every == 0:
            chart.x_ticks.append(_x_tick(x, bound_label(low_of(i)), LEFT, LEFT + plot_width))
        high = f"to {bound_label(bounds[i])}" if i < len(bounds) else "or longer"
        bar = Bar(
            x=units(x + 1),
            width=units(max(slot - 2, 0.8)),
            title=f"{counts[i]:,} from {bound_label(low_of(i))} {high}",
        )
        if counts[i]:
            height = plot_height * counts[i] / y_top
            bar.segments.append(Segment("duration", units(TOP + plot_height - height), units(height)))
        chart.bars.append(bar)
    for kind, value in markers.items():
        if value is None:
            continue
        # Where the value falls inside its bucket (the buckets are geometric: interpolate in log).
        index = next((i for i, bound in enumerate(bounds) if value <= bound), len(bounds))
        index = min(max(index, first), last)
        low, high = low_of(index), bounds[index] if index < len(bounds) else low_of(index) * 2
        fraction = 0.5
        if low > 0 and high > low and value > 0:
            fraction = min(max(math.log(value / low) / math.log(high / low), 0.0), 1.0)
        elif high > 0:
            fraction = min(max(value / high, 0.0), 1.0)
        x = LEFT + (index - first + fraction) * slot
        chart.markers.append(Marker(kind, units(x), f"{kind} {bound_label(value)}"))
    _place_marker_labels(chart.markers, width)
    return chart


# An 11 px semi-bold label's widest average advance per character, in user units (the chart's
# units are its pixels on a desktop screen), and a second row's drop below the first.
LABEL_ADVANCE, LABEL_ROW = 7.0, 13


def _place_marker_labels(markers: list[Marker], width: float) -> None:
    """The first label reads leftwards of its rule, the next rightwards, so two close rules stay
    legible; a label that would leave the chart (or cover the y axis's labels) reads the other way,
    and one that would then overlap a label already placed drops to a row of its own (just inside
    the plot's top)."""
    placed: list[tuple[float, float, int]] = []  # (from, to, row)
    for n, marker in enumerate(markers):
        x, extent = float(marker.x), len(marker.label) * LABEL_ADVANCE + 4
        leftwards = n == 0
        if leftwards and x - extent < LEFT:  # not over the y axis's labels
            leftwards = False
        elif not leftwards and x + extent > width:
            leftwards = True
        start, end = (x - extent, x) if leftwards else (x, x + extent)
        row = 0
        while any(r == row and a < end and start < b for a, b, r in placed):
            row += 1
        placed.append((start, end, row))
        marker.anchor, marker.dx = ("end", "-4") if leftwards else ("start", "4")
        marker.label_y = units(TOP - 6 + row * LABEL_ROW)


def short_duration(seconds: float | None) -> str:
    """A duration in one short unit, for axes and tiles: 0.7 s, 45 s, 1.5 min, 2.3 h, 1.1 d."""
    if seconds is None:
        return "—"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            value = seconds / size
            return f"{value:.1f} {unit}".replace(".0 ", " ") if value < 10 else f"{value:.0f} {unit}"
    return f"{seconds:.1f} s".replace(".0 ", " ") if seconds < 10 else f"{seconds:.0f} s"
