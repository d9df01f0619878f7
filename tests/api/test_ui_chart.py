"""The job page's loss chart: epoch events in, an SVG with titled axes and a labelled legend out."""

from __future__ import annotations

import re
from types import SimpleNamespace

from api.ui.chart import epoch_points, loss_chart_svg


def _epoch(epoch: int, train: float, heldout: float) -> SimpleNamespace:
    data = {"epoch": epoch, "epochs": 3, "train_loss": train, "heldout_neg_elbo": heldout}
    return SimpleNamespace(kind="epoch", data=data)


def test_chart_draws_train_and_heldout_per_epoch_with_titled_axes() -> None:
    events = [SimpleNamespace(kind="claimed", data={}), _epoch(1, 37.2, 31.5), _epoch(2, 29.6, 28.0)]
    svg = loss_chart_svg(epoch_points(events))
    assert svg.count("<polyline") == 2
    assert ">train<" in svg and ">held-out<" in svg and ">epoch<" in svg and ">nats per image<" in svg


def test_every_point_lies_inside_the_plot_area() -> None:
    points = epoch_points([_epoch(1, 37.25, 31.56), _epoch(2, 26.4, 25.9), _epoch(3, 26.0, 25.8)])
    svg = loss_chart_svg(points)
    ys = [float(y) for y in re.findall(r'<circle cx="[\d.]+" cy="([\d.]+)"', svg)]
    assert ys and all(28 <= y <= 260 - 44 for y in ys), ys


def test_a_resumed_epoch_counts_once_and_bad_values_are_left_out() -> None:
    events = [_epoch(1, 10.0, 9.0), _epoch(1, 11.0, 9.5), _epoch(2, float("nan"), 8.0)]
    assert [(p.epoch, p.train_loss) for p in epoch_points(events)] == [(1, 11.0)]
    assert loss_chart_svg([]) == ""


def test_epochs_that_eval_every_skipped_keep_their_train_point() -> None:
    events = [_epoch(1, 37.2, None), _epoch(2, 29.6, None), _epoch(3, 27.0, 26.5)]  # type: ignore[arg-type]
    points = epoch_points(events)
    assert [(p.epoch, p.heldout_neg_elbo) for p in points] == [(1, None), (2, None), (3, 26.5)]
    svg = loss_chart_svg(points)
    assert svg.count("<circle") == 4  # three train points, one held-out
    assert svg.count("<polyline") == 2
