"""A small tree with the seed's edge cases, extracted with `--model arcface` (shared by the
tests of featstore/npy_dir)."""

from __future__ import annotations

from pathlib import Path

from conftest import Dataset, Models, fast_runtime, run_extract

from featstore.synthetic.images import draw_face, generate_face_tree

ARCFACE = "arcface_buffalo_l"


def edge_tree(root: Path) -> Dataset:
    """3 identities x 4 frames (the 4th shows no face), a prefix pair ('Anne Marie' <
    'Anne' by file name), a broken frame, an empty frontal image, an orphan video folder
    and a frontal image without video."""
    face, video = generate_face_tree(root, identities=3, frames_per_identity=4, no_face_every=4)
    portrait = draw_face((320, 240), seed=11)
    portrait.save(face / "Anne.jpg")
    portrait.save(face / "Anne Marie.jpg")
    for name in ("Anne", "Anne Marie"):
        (video / name).mkdir()
    for i in range(2):
        draw_face((320, 240), center=(150.0 + 5 * i, 120.0), seed=20 + i).save(
            video / "Anne" / f"f{i}.jpg"
        )
        draw_face((300, 260), center=(140.0, 110.0 + 5 * i), seed=30 + i).save(
            video / "Anne Marie" / f"f{i}.jpg"
        )
    (video / "Anne" / "broken.jpg").write_bytes(b"not an image")
    (video / "orphan").mkdir()
    draw_face((320, 240), seed=40).save(video / "orphan" / "a.jpg")
    draw_face((320, 240), seed=41).save(face / "novideo.jpg")
    (face / "bad.jpg").write_bytes(b"")
    return Dataset(root, face, video)


def extract_arcface(dataset: Dataset, store: Path, models: Models) -> Path:
    run_extract(
        dataset, store, models, models=["arcface"], base_dir=dataset.root, runtime=fast_runtime()
    )
    return store
