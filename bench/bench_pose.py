"""Head pose stability: how far each definition's Euler angles move when the five keypoints
move by 0.1 px (issue 23, point 10; docs/pose.md), and what a solve costs.

    .venv/bin/python bench/bench_pose.py [--full] [--trials N] [--noise-px 0.1]
                                         [--metadata front_metadata.json]

Faces: `featstore.synthetic.pose_trials.face_grid`, InsightFace's frontal keypoint layout
given depth, varied per face, posed on a grid of yaw (-40..40), pitch (-20..20) and roll
(-15..15) and projected into a 1440x1080 image at face widths of 100, 200 and 400 px. Each
face is solved clean and `--trials` times with Gaussian noise of `--noise-px` added to its
keypoints (the same noise for both definitions); the change of each angle is taken modulo
360. `--metadata`: also the keypoints and image sizes of a seed npy directory's
`front_metadata.json` / `video_metadata.json` (real InsightFace keypoints).

Printed per face width: median and 95th percentile of the change of each angle (the seed's
yaw, pitch, roll), the share of trials where some angle jumps by more than 5 degrees, where
the roll crosses ±180 (harmless modulo 360) and without a pose; then featstore-pose-sqpnp-v1
against face000-pose-v1 as ratios (lower is stabler). Then the time of one solve of each,
and their ratio (in-process, single thread; machine load moves it).

Quick by default (20 trials a face, 45 faces a width: about 5 s); `--full` 200 trials.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from featstore.extraction.pose import FACE000_POSE, SQPNP_POSE, PoseDefinition
from featstore.synthetic.pose_trials import Face, Stability, angle_changes, face_grid

DEFINITIONS = (FACE000_POSE, SQPNP_POSE)
WIDTHS = (100, 200, 400)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="200 trials a face")
    parser.add_argument("--trials", type=int, default=None, help="noisy solves a face")
    parser.add_argument("--noise-px", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--metadata", type=Path, action="append", default=[])
    args = parser.parse_args()
    trials = args.trials or (200 if args.full else 20)

    sets = [(f"{w} px", face_grid(face_widths=(w,), seed=args.seed + w)) for w in WIDTHS]
    sets += [(path.name, read_metadata(path)) for path in args.metadata]
    print(
        f"\nAngle change under {args.noise_px} px of keypoint noise (degrees, modulo 360; "
        f"{trials} trials a face)\n"
    )
    print(
        "| faces | definition | trials | median yaw / pitch / roll | p95 yaw / pitch / roll "
        "| jumps > 5 deg | roll wraps ±180 | no pose |"
    )
    print("| --- | --- | ---: | --- | --- | ---: | ---: | ---: |")
    ratios = []
    for name, faces in sets:
        found = {}
        for definition in DEFINITIONS:
            changes = angle_changes(
                definition.solve, faces, noise_px=args.noise_px, trials=trials, seed=args.seed
            )
            s = found[definition.name] = Stability.of(changes)
            print(
                f"| {name} ({len(faces)}) | {definition.name} | {s.trials} | {_three(s.median)} "
                f"| {_three(s.p95)} | {s.jumps:.1%} | {s.roll_wraps:.1%} | {s.failures:.1%} |"
            )
        ratios.append((name, found[FACE000_POSE.name], found[SQPNP_POSE.name]))

    print(f"\n{SQPNP_POSE.name} / {FACE000_POSE.name} (same faces, same noise)\n")
    print("| faces | median ratio (worst angle) | p95 ratio (worst angle) | jumps |")
    print("| --- | ---: | ---: | --- |")
    for name, base, stable in ratios:
        print(
            f"| {name} | {_worst_ratio(stable.median, base.median):.3f} "
            f"| {_worst_ratio(stable.p95, base.p95):.4f} "
            f"| {stable.jumps:.1%} vs {base.jumps:.1%} |"
        )

    faces = face_grid(face_widths=(200,), seed=args.seed)
    times = {d.name: solve_seconds(d, faces) for d in DEFINITIONS}
    print("\n| one solve (200 px faces) | µs | ratio to face000-pose-v1 |")
    print("| --- | ---: | ---: |")
    for name, seconds in times.items():
        ratio = seconds / times[FACE000_POSE.name]
        print(f"| {name} | {seconds * 1e6:.0f} | {ratio:.2f} |")


def read_metadata(path: Path) -> list[Face]:
    """The faces of a seed npy directory's metadata file (docs/formats.md): its float32
    `landmarks_2d` and each row's `image_size`."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [
        Face(np.asarray(points, np.float32), int(meta["image_size"][0]),
             int(meta["image_size"][1]), 0, (np.nan, np.nan, np.nan))
        for points, meta in zip(data["landmarks_2d"], data["metadata"], strict=True)
    ]  # fmt: skip


def solve_seconds(definition: PoseDefinition, faces: Sequence[Face], rounds: int = 20) -> float:
    """Seconds per solve: the best of `rounds` passes over `faces` (the least disturbed)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for face in faces:
            definition.solve(face.keypoints, face.width, face.height)
        best = min(best, (time.perf_counter() - start) / len(faces))
    return best


def _three(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{v:.3g}" for v in values)


def _worst_ratio(stable: tuple[float, ...], base: tuple[float, ...]) -> float:
    """The stable definition's largest value over the base's largest (its worst angle
    against the base's worst)."""
    return max(stable) / max(max(base), 1e-12)


if __name__ == "__main__":
    main()
