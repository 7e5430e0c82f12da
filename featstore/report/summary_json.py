"""The report's numbers as a JSON block inside the page, for tools and tests."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from featstore.report.data import TABLE_ROWS, ReportData
from featstore.report.stats import Stats


def _stable_pose(data: ReportData) -> dict[str, Any] | None:
    """featstore-pose-sqpnp-v1 beside face000-pose-v1 (None: the store predates it)."""
    stable = data.pose.stable if data.pose else None
    if stable is None:
        return None
    return {
        "definition": "featstore-pose-sqpnp-v1",
        "frames": stable.frames,
        "frames_without": stable.frames_without,
        "disagreeing_frames": stable.disagreeing(),
        "angles": {n: stats_dict(v.stats) for n, v in stable.values.items()},
        "disagreement": {n: stats_dict(v.stats) for n, v in stable.disagreement.items()},
    }


def summary_json(data: ReportData) -> str:
    """The numbers shown, as JSON for tools and tests."""
    c = data.counts[data.model.name]
    summary = {
        "store": str(data.store),
        "model": data.model.name,
        "models": {m.name: m.dim for m in data.models},
        "where": data.where,
        "identities": c.identities,
        "valid_identities": c.valid_identities,
        "faces": c.faces,
        "frames": c.frames,
        "frames_selected": data.frames_selected,
        "identity_table": [
            [r.identity, r.face_status, r.frames_total, r.frames_ok, r.frames_no_face]
            + [r.frames_unreadable, r.valid]
            for r in data.identities[:TABLE_ROWS]
        ],
        "angles": {name: stats_dict(v.stats) for name, v in data.angles.items()},
        "pose": {
            n: stats_dict(v.stats) for n, v in (data.pose.values if data.pose else {}).items()
        },
        "pose_stable": _stable_pose(data),
        "det_score": {role: stats_dict(v.stats) for role, v in data.det_scores.items()},
        "norms": {
            "checked": data.norms.checked,
            "non_finite": data.norms.non_finite,
            "zero": data.norms.zero,
            "non_unit": data.norms.non_unit,
            "tolerance": data.norms.tolerance,
        },
        "rejected_frames": data.rejected_total,
        "consistency": data.consistency.summary() if data.consistency else None,
        "neighbors": data.neighbors.summary() if data.neighbors else None,
        "comparisons": {
            c.other: (
                {"identities": c.identities, "cosine": {k: finite(v) for k, v in c.cosine.items()}}
                if c.comparable
                else {"comparable": False, "dims": [c.dim, c.other_dim]}
            )
            for c in data.comparisons
        },
        "unshown_images": [
            [i.identity, i.thumbnail.image_path, i.thumbnail.problem] for i in data.unshown_images
        ],
    }
    text = script_json(json.dumps(summary, ensure_ascii=False, allow_nan=False))
    return f"<script type='application/json' id='featstore-report'>{text}</script>"


# Inside <script>, `</script` ends the element and `<!--` followed by `<script` makes the
# parser skip the next `</script>` (the "double escaped" state): no `<` may appear raw.
# `>` and `&` go too (as in Django's json_script), and U+2028/2029, which older
# JavaScript parsers take for line ends. In JSON they can only occur inside strings,
# where the `\uXXXX` form means the same characters.
SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(text: str) -> str:
    """JSON text made safe to embed in an HTML `<script>` element, meaning unchanged."""
    return text.translate(SCRIPT_ESCAPES)


def finite(value: float | None) -> float | None:
    """JSON has no NaN: a non-finite value is written as null."""
    return value if value is not None and np.isfinite(value) else None


def stats_dict(stats: Stats) -> dict[str, Any]:
    return {
        "count": stats.count,
        "non_finite": stats.non_finite,
        "mean": stats.mean,
        "min": stats.minimum,
        "median": stats.median,
        "max": stats.maximum,
    }
