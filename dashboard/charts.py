"""Geometry for the small server-rendered bar chart (SVG in the template).

Drawn on the server so the page needs no chart library, no CDN and no network: it
works offline and without JavaScript.
"""

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

WIDTH = 480
HEIGHT = 120
AXIS = 16  # room under the bars for the hour labels
TOP = 14  # room above the tallest bar for its value
MARGIN = 14  # each side, so a label centred under the first or last bar is not cut


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    center: float  # where the texts above and below the bar are centred
    count: int
    hour_label: str  # local time, e.g. "14:00"
    show_label: bool  # every sixth hour, so the labels do not collide


@dataclass(frozen=True)
class BarChart:
    bars: list[Bar]
    peak: int
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    baseline: int = HEIGHT - AXIS
    margin: int = MARGIN

    @property
    def view_box(self) -> str:
        return f"{-self.margin} 0 {self.width + 2 * self.margin} {self.height}"


def bar_chart(series: list[tuple[datetime, int]]) -> BarChart:
    peak = max((count for _, count in series), default=0)
    slot = WIDTH / max(len(series), 1)
    room = HEIGHT - AXIS - TOP
    bars = []
    for index, (hour, count) in enumerate(series):
        height = room * count / peak if peak else 0
        bars.append(Bar(
            x=round(index * slot + 1, 1), y=round(HEIGHT - AXIS - height, 1),
            width=round(slot - 2, 1), height=round(height, 1), center=round((index + 0.5) * slot, 1),
            count=count,
            hour_label=timezone.localtime(hour).strftime("%H:%M"),
            show_label=(len(series) - 1 - index) % 6 == 0,
        ))
    return BarChart(bars=bars, peak=peak, total=sum(count for _, count in series))
