"""Figures drawn without pyplot.

tinytwin draws its figures (an energy run's trace, an sww01 run's stream, a
what-if sweep) each on a :class:`matplotlib.figure.Figure` of its own with an
Agg canvas, as matplotlib's documentation embeds figures in an application.
pyplot is never imported: the caller's backend (a notebook's, say) stays as it
was, no figure is left in pyplot's registry to close, and any thread may draw
(``tests/test_figures.py``)."""
from __future__ import annotations

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def new_figure(**kwargs) -> Figure:
    """A figure (``kwargs`` as :class:`~matplotlib.figure.Figure` takes them,
    e.g. ``figsize``) with an Agg canvas: it draws, measures its text and
    saves PNGs without pyplot."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
