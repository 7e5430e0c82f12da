"""The HTML of `featstore report`: one file, nothing fetched when it is opened.

Plots are PNGs and thumbnails JPEGs, both as `data:` URIs; the style and the table
sorter are inline; a Content-Security-Policy forbids every other source, so the page
cannot reach the network even by accident. The numbers shown are also embedded as JSON
(`<script type="application/json" id="featstore-report">`) for tools and tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from html import escape
from typing import Any

from featstore import __version__
from featstore.errors import plural
from featstore.report.consistency import render_consistency
from featstore.report.data import (
    ANGLES,
    TABLE_ROWS,
    GalleryImage,
    IdentityRow,
    ModelComparison,
    ReportData,
)
from featstore.report.gallery import LANDMARK_COLOURS, png_data_uri
from featstore.report.neighbors import render_neighbors
from featstore.report.page_assets import CSP, SCRIPT, STYLE
from featstore.report.plots import Panel, Series, histograms_png
from featstore.report.pose import (
    BASE,
    POSE_NAMES,
    STABLE,
    PoseDistribution,
    pose_caption,
    pose_heading,
    pose_panels,
)
from featstore.report.stats import Stats
from featstore.report.summary_json import summary_json
from featstore.store.format import stand_in_warning

REASON_CHARS = 300


def render_report(data: ReportData) -> str:
    """The whole HTML document of a report."""
    sections = [
        _overview(data),
        _identities(data.identities, data.identities_selected),
        _distributions(data),
        _rejections(data),
        _gallery(data),
        render_consistency(data.consistency),
        render_neighbors(data.neighbors),
        _comparisons(data.comparisons),
        _unshown(data),
    ]
    title = f"featstore report: {data.model.name} in {data.store}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>"
        f"<p class='muted'>featstore {escape(__version__)}, "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. "
        "Every number comes from the views of <code>featstore query</code>.</p>"
        + "".join(sections)
        + summary_json(data)
        + f"<script>{SCRIPT}</script></body></html>\n"
    )


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "n/a"


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _table(
    head: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[bool] = (),
    sortable: bool = False,
    table_id: str = "",
) -> str:
    """An HTML table; cells are escaped unless given as `_Raw`."""
    numeric = list(numeric) or [False] * len(head)
    classes = ["n" if n else "" for n in numeric]
    attrs = (" class='sortable'" if sortable else "") + (f" id='{table_id}'" if table_id else "")
    parts = [f"<table{attrs}><thead><tr>"]
    parts += [f"<th class='{c}'>{escape(h)}</th>" for h, c in zip(head, classes, strict=True)]
    parts.append("</tr></thead><tbody>")
    for row in rows:
        parts.append("<tr>")
        for value, c in zip(row, classes, strict=True):
            parts.append(f"<td class='{c}'>{_cell(value)}</td>")
        parts.append("</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


class _Raw(str):
    """HTML that `_table` puts in a cell as it is."""


def _cell(value: Any) -> str:
    if isinstance(value, _Raw):
        return str(value)
    if value is None:
        return "<span class='muted'>-</span>"
    return escape(str(value))


def _overview(data: ReportData) -> str:
    rows = []
    for m in data.models:
        c = data.counts.get(m.name)
        if c is None:
            continue
        frames = c.frames
        name = f"<b>{escape(m.name)}</b>" if m.name == data.model.name else escape(m.name)
        rows.append(
            [
                _Raw(name),
                m.dim,
                c.identities,
                f"{c.valid_identities} ({_pct(c.valid_identities, c.identities)})",
                ", ".join(f"{s} {n}" for s, n in c.faces.items()) or None,
                c.frame_total,
                f"{frames.get('ok', 0)} ({_pct(frames.get('ok', 0), c.frame_total)})",
                frames.get("no_face", 0),
                frames.get("unreadable", 0),
            ]
        )
    head = ["model", "dim", "identities", "valid identities", "frontal images", "frames"]
    head += ["ok frames", "no_face", "unreadable"]
    warnings = [w for m in data.models if (w := stand_in_warning(m.provenance))]
    parts = [
        "<h2 id='overview'>Overview</h2>",
        *(f"<p id='stand-in' class='bad stand-in'>{escape(w)}</p>" for w in warnings),
        f"<p>Store <code>{escape(str(data.store))}</code>; this report is about model "
        f"<b>{escape(data.model.name)}</b> (dimension {data.model.dim}). An identity is "
        "valid when its frontal image is ok and at least one of its frames is ok.</p>",
        _table(head, rows, numeric=[False, True, True, True, False, True, True, True, True]),
    ]
    total = data.counts[data.model.name].frame_total
    if data.where:
        valid = data.valid_selected
        parts.append(
            f"<p><b>--where</b> <code>{escape(data.where)}</code> keeps "
            f"<b id='frames-selected'>{data.frames_selected}</b> of {total} frames "
            f"({_pct(data.frames_selected, total)}); {plural(valid, 'identity')} "
            f"stay{'s' if valid == 1 else ''} valid. Everything "
            "below is computed over the frames it keeps (frontal images are never filtered).</p>"
        )
    for m in data.models:
        parts.append(
            f"<details><summary>provenance of {escape(m.name)}</summary>"
            + _table(["key", "value"], sorted(_flatten(m.provenance).items()))
            + "</details>"
        )
    return "".join(parts)


def _flatten(value: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict):
            flat.update(_flatten(item, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = item
    return flat


def _identities(rows: list[IdentityRow], total: int) -> str:
    shown = rows[:TABLE_ROWS]
    body = [
        [
            _Raw(f"{rank}"),
            r.identity,
            r.face_status,
            r.frames_total,
            r.frames_ok,
            r.frames_no_face,
            r.frames_unreadable,
            _Raw(f"{100 * r.ok_share:.1f}") if r.frames_total else _Raw("0.0"),
            _Raw("<span class='ok'>yes</span>" if r.valid else "<span class='bad'>no</span>"),
        ]
        for rank, r in enumerate(shown, 1)
    ]
    head = ["#", "identity", "frontal", "frames", "ok", "no_face", "unreadable", "ok %", "valid"]
    note = (
        f"<p class='muted'>The {len(shown)} worst of {plural(total, 'identity')}; "
        '<code>featstore query "SELECT * FROM identities"</code> lists them all.</p>'
        if total > len(shown)
        else ""
    )
    return (
        "<h2 id='identities'>Identities, worst first</h2>"
        "<p class='muted'>Not valid first, then by the share of frames that are not ok, then "
        "by frames lost. Click a column to sort; <b>#</b> restores this order.</p>"
        + note
        + "<div class='scroll'>"
        + _table(
            head,
            body,
            numeric=[True, False, False, True, True, True, True, True, False],
            sortable=True,
            table_id="identity-table",
        )
        + "</div>"
    )


def _stats_table(named: Sequence[tuple[str, Stats]]) -> str:
    head = ["values", "count", "non-finite", "mean", "std", "min", "median", "max"]
    rows = [
        [name, s.count, s.non_finite, _num(s.mean), _num(s.std)]
        + [_num(s.minimum), _num(s.median), _num(s.maximum)]
        for name, s in named
    ]
    return _table(head, rows, numeric=[False] + [True] * 7)


def _plot(panels: Sequence[Panel], alt: str, columns: int = 3) -> str:
    uri = png_data_uri(histograms_png(panels, columns=columns))
    return f"<img class='plot' alt='{escape(alt)}' src='{uri}'>"


def _distributions(data: ReportData) -> str:
    angle_panels = [
        Panel(
            name if name == "avg_angle" else f"spherical_angles[{i}] ({_KEYPOINTS[i - 1]})",
            "degrees",
            [Series("", data.angles[name].histogram)],
            bins=72,
        )
        for i, name in enumerate(ANGLES)
    ]
    norms = data.norms
    scores = data.det_scores
    per_identity = data.frames_per_identity
    other_panels = [
        Panel(
            "det_score",
            "detector score",
            [Series(role, v.histogram) for role, v in scores.items() if v.count],
        ),
        Panel(
            "feature L2 norm",
            "norm (expected 1)",
            [Series(role, v.histogram) for role, v in norms.norms.items() if v.count],
            log_y=True,
            min_span=4 * norms.tolerance,
        ),
        Panel(
            "frames per identity",
            "frames",
            [Series(name, per_identity[name].histogram) for name in ("all", "ok")],
            bins="integer",
        ),
    ]
    flag_class = "bad" if norms.flagged_total else "ok"
    flags = (
        f"<p class='{flag_class}' id='norm-check'>Feature norms: {norms.checked} features "
        f"checked, {norms.flagged_total} flagged: {norms.non_finite} NaN or infinite, "
        f"{norms.zero} zero, {norms.non_unit} further than {norms.tolerance:g} from 1 "
        "(features are L2-normalised).</p>"
    )
    if norms.flagged:
        flags += _table(
            ["identity", "role", "image_path", "norm"],
            [[f.identity, f.role, f.image_path, f"{f.norm:.6g}"] for f in norms.flagged],
            numeric=[False, False, False, True],
        )
    return (
        "<h2 id='distributions'>Distributions</h2>"
        f"<h3>Angles (degrees, over the {data.angles['avg_angle'].count} frames of "
        "<code>valid_frames</code>)</h3>"
        + _plot(angle_panels, "angle histograms")
        + _stats_table([(name, data.angles[name].stats) for name in ANGLES])
        + _pose(data.pose)
        + "<h3>Detector scores, feature norms, frames per identity</h3>"
        + _plot(other_panels, "score, norm and frames histograms")
        + _stats_table(
            [(f"det_score ({role})", v.stats) for role, v in scores.items()]
            + [(f"norm ({role})", v.stats) for role, v in norms.norms.items()]
            + [("frames per identity", per_identity["all"].stats)]
            + [("ok frames per identity", per_identity["ok"].stats)]
        )
        + flags
    )


def _pose(pose: PoseDistribution | None) -> str:
    if pose is None or not pose.available:
        return pose_heading(pose)
    rows = [(f"{name} (circular)", pose.values[name].stats) for name in POSE_NAMES]
    if pose.stable is not None and pose.stable.frames:
        rows += [
            (f"{name}, {STABLE} (circular)", pose.stable.values[name].stats) for name in POSE_NAMES
        ] + [
            (f"{name}: |{BASE} - {STABLE}|", pose.stable.disagreement[name].stats)
            for name in POSE_NAMES
        ]
    stats = _stats_table(rows)
    return pose_heading(pose) + _plot(pose_panels(pose), "head pose histograms") + stats


PLACEHOLDER_CHARS = 60  # what fits in a thumbnail's box; the whole reason is its tooltip
_KEYPOINTS = ("left eye", "right eye", "nose", "left mouth", "right mouth")


def _figure(image: GalleryImage, caption: str) -> str:
    t = image.thumbnail
    if t.data_uri is not None:
        picture = f"<img src='{t.data_uri}' alt='{escape(t.image_path)}'>"
    else:
        problem = t.problem or "not shown"
        short = (
            problem if len(problem) <= PLACEHOLDER_CHARS else problem[: PLACEHOLDER_CHARS - 1] + "…"
        )
        picture = f"<div class='placeholder' title='{escape(problem)}'>{escape(short)}</div>"
    return (
        f"<figure>{picture}<figcaption>{caption}<br>"
        f"<span class='muted'>{escape(t.image_path)}</span></figcaption></figure>"
    )


def _status(image: GalleryImage) -> str:
    css = "ok" if image.status == "ok" else "bad"
    return f"<span class='{css}'>{escape(image.status)}</span>"


def _rejections(data: ReportData) -> str:
    reasons = _table(
        ["status", "error", "frames"],
        [[s, (e or "")[:REASON_CHARS] or None, n] for s, e, n in data.rejection_reasons],
        numeric=[False, False, True],
    )
    figures = "".join(
        _figure(
            image,
            f"{escape(image.identity)} #{image.frame_index} {_status(image)}"
            f"<br>{escape((image.error or '')[:REASON_CHARS])}",
        )
        for image in data.rejected
    )
    return (
        f"<h2 id='rejected'>Rejected frames ({data.rejected_total})</h2>"
        + ("<h3>Most frequent reasons</h3>" + reasons if data.rejection_reasons else "")
        + (
            f"<h3>A sample of {len(data.rejected)} (seed {data.seed})</h3>"
            f"<div class='strip'>{figures}</div>"
            if data.rejected
            else _no_rejection(data)
        )
    )


def _no_rejection(data: ReportData) -> str:
    if data.where is None:
        return "<p>No frame was rejected.</p>"
    # A rejected frame has null angles, scores and features: most filters drop them all.
    return (
        f"<p>No rejected frame among the frames that --where {escape(data.where)!s} keeps. "
        "Rejected frames have no angles, scores or features, so a filter on those columns "
        "leaves none of them; the overview above counts the whole store.</p>"
    )


def _gallery(data: ReportData) -> str:
    legend = " ".join(
        f"<span class='swatch' style='background: rgb{colour}'></span> {name}"
        for name, colour in zip(_KEYPOINTS, LANDMARK_COLOURS, strict=True)
    )
    parts = [
        f"<h2 id='gallery'>Gallery ({plural(len(data.gallery), 'identity')}, "
        f"seed {data.seed})</h2>",
        f"<p class='muted'>Green: the face box. Landmarks: {legend}.</p>",
    ]
    for entry in data.gallery:
        figures = []
        if entry.face is not None:
            figures.append(
                _figure(entry.face, f"frontal {_status(entry.face)}{_pose_line(entry.face)}")
            )
        figures += [
            _figure(f, f"frame #{f.frame_index} {_status(f)}{_pose_line(f)}") for f in entry.frames
        ]
        parts.append(
            f"<div class='identity'><h3>{escape(entry.identity)} "
            f"<span class='muted'>({entry.frames_total} frames, {len(entry.frames)} shown)"
            f"</span></h3><div class='strip'>{''.join(figures)}</div></div>"
        )
    return "".join(parts)


def _pose_line(image: GalleryImage) -> str:
    """The head pose under a thumbnail (images with a face only)."""
    if image.status != "ok":
        return ""
    return f"<br><span class='pose'>{escape(pose_caption(image.euler_angles))}</span>"


def _comparisons(comparisons: list[ModelComparison]) -> str:
    if not comparisons:
        return ""
    parts = ["<h2 id='models'>Between models: cosine similarity of frontal features</h2>"]
    for c in comparisons:
        title = f"<h3>{escape(c.model)} vs {escape(c.other)}</h3>"
        if not c.comparable:
            parts.append(
                title + f"<p class='muted'>Cannot be compared: {escape(c.model)} has {c.dim} "
                f"dimensions and {escape(c.other)} has {c.other_dim}.</p>"
            )
            continue
        values = c.values()
        stats = Stats.of(values)
        parts.append(
            title + f"<p>{plural(c.identities, 'identity')} "
            f"{'has' if c.identities == 1 else 'have'} a frontal image in both models; "
            f"{values.size} have features in both.</p>"
            + _plot(
                [Panel("cosine similarity", "cosine", [Series("", values)], value_range=None)],
                f"cosine similarity {c.model} vs {c.other}",
                columns=1,
            )
            + _stats_table([("cosine", stats)])
            + "<p class='muted'>Lowest similarities:</p>"
            + _table(
                ["identity", "cosine"],
                [[i, f"{v:.6f}"] for i, v in c.lowest()],
                numeric=[False, True],
            )
        )
    return "".join(parts)


def _unshown(data: ReportData) -> str:
    images = data.unshown_images
    if not images:
        return ""
    rows = [
        [
            i.identity,
            i.role,
            i.thumbnail.image_path,
            str(i.thumbnail.resolved or ""),
            i.thumbnail.problem,
        ]
        for i in images
    ]
    return (
        f"<h2 id='unshown'>Images not shown ({len(images)})</h2>"
        "<p class='muted'>Looked for at the stored path under the base dir of the model's "
        "provenance.</p>"
        + _table(["identity", "role", "image_path", "looked for", "problem"], rows)
    )
