"""What an extraction did and what the store now holds, for people and for code."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featstore.errors import plural, printable
from featstore.store import Store
from featstore.store.query import StoreCounts, count_rows


def store_counts(store: Store, model: str) -> StoreCounts:
    """What the store now holds for `model` (see `featstore.store.query.count_rows`)."""
    return count_rows(store, model=model)[model]


@dataclass(frozen=True)
class ExtractSummary:
    """The result of `featstore.extract`."""

    store: Path | str  # the folder, or the URI (credentials scrubbed)
    models: tuple[str, ...]
    device: str
    detector_providers: tuple[str, ...]
    identities_in_input: int
    identities_extracted: int
    images_extracted: int
    run_counts: dict[str, int]  # this run's images by status
    face_without_video: tuple[str, ...]
    video_without_face: tuple[str, ...]
    ambiguous_faces: tuple[str, ...]
    ignored_files: int
    elapsed_s: float
    timings: dict[str, float]  # setup_s, models_s (DINOv2 loading), processing_s
    store_counts: dict[str, StoreCounts]
    shard: tuple[int, int] | None = None  # (i, n): the counts above are this shard's
    engine: str = "local"
    skipped_entries: tuple[str, ...] = ()  # entries of --video-dir that are no folder
    without_pose: int = 0  # this run's images with a face but no head pose (docs/formats.md)
    skipped_inputs: tuple[str, ...] = ()  # "<path> (why)" of every input not read
    warnings: tuple[str, ...] = ()  # the input folders look wrong
    without_inputs: tuple[str, ...] = ()  # identities in the store whose inputs are gone
    dry_run: bool = False  # nothing was extracted: the counts say what would be
    model_files: tuple[str, ...] = ()  # "<model>: <path>", then "detector: <path>"
    limit: int | None = None  # only the first `limit` identities were considered
    stand_in: tuple[str, ...] = ()  # a warning per model run with stand-in model files

    @property
    def images_per_s(self) -> float:
        return self.images_extracted / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def identities_skipped(self) -> int:
        return self.identities_in_input - self.identities_extracted

    def format(self) -> str:
        """A human summary in the spirit of the seed script's closing report.

        Names are shown through `featstore.errors.printable`: a name holding a newline
        or an escape sequence cannot forge a line or restyle the terminal.
        """
        if self.dry_run:
            return self._format_dry_run()
        return "\n".join([*self._stand_in_lines(), self._format_run()])

    def _stand_in_lines(self) -> list[str]:
        # Said first: the summary's counts look real, and a real-looking summary of a
        # random network is how a stand-in run gets mistaken for a real one.
        return [f"!! {w}" for w in self.stand_in]

    def _format_run(self) -> str:
        c = self.run_counts
        where = self.device if self.engine == "local" else f"{self.device} ({self.engine})"
        lines = [
            f"extracted {plural(self.images_extracted, 'image')} of "
            f"{plural(self.identities_extracted, 'identity', 'identities')} "
            f"in {self.elapsed_s:.1f} s ({self.images_per_s:.1f} images/s) on {where}; "
            f"{plural(self.identities_skipped, 'identity', 'identities')} already up to date",
            f"  this run: ok {c.get('ok', 0)}, no_face {c.get('no_face', 0)}, "
            f"unreadable {c.get('unreadable', 0)}",
        ]
        if self.without_pose:
            lines.append(
                f"  note: {plural(self.without_pose, 'image')} with a face "
                f"{'has' if self.without_pose == 1 else 'have'} no head pose "
                "(face000-pose-v1; the log says why); their pose columns are null"
            )
        if self.shard is not None:
            i, n = self.shard
            ids = plural(self.identities_in_input, "identity", "identities")
            lines[0] = f"shard {i}/{n} ({ids}): " + lines[0]
        for model, s in self.store_counts.items():
            rate = s.valid_identities / s.identities if s.identities else 0.0
            frames = s.frames
            lines.append(
                f"  store [{printable(model)}]: {plural(s.identities, 'identity', 'identities')}, "
                f"{s.valid_identities} valid "
                f"({rate:.1%}); {s.frame_total} frames: ok {frames.get('ok', 0)}, "
                f"no_face {frames.get('no_face', 0)}, unreadable {frames.get('unreadable', 0)}"
            )
        for label, names in (
            ("frontal image but no video folder", self.face_without_video),
            ("video folder but no frontal image", self.video_without_face),
            ("frontal image under two names (first by name used)", self.ambiguous_faces),
        ):
            if names:
                shown = ", ".join(map(printable, names[:5])) + (", ..." if len(names) > 5 else "")
                noun = "identity" if len(names) == 1 else "identities"
                lines.append(f"  note: {len(names)} {noun} with a {label}: {shown}")
        if self.skipped_entries:
            skipped = self.skipped_entries
            shown = ", ".join(map(printable, skipped[:5])) + (", ..." if len(skipped) > 5 else "")
            lines.append(
                f"  note: {plural(len(skipped), 'entry', 'entries')} of the video folder "
                "skipped (not a folder): " + shown
            )
        if self.without_inputs:
            names = self.without_inputs
            shown = ", ".join(map(printable, names[:5])) + (", ..." if len(names) > 5 else "")
            lines.append(
                f"  note: {plural(len(names), 'identity', 'identities')} in the store "
                f"{'has' if len(names) == 1 else 'have'} no inputs any more "
                f"(deleted or renamed): {shown}; their rows stay in the store and in "
                "export-json until `featstore prune` (with the same --face-dir, --video-dir "
                "and --store) removes them"
            )
        if self.skipped_inputs:
            k = len(self.skipped_inputs)
            lines.append(
                f"  note: {plural(k, 'input')} skipped, e.g. "
                f"{printable(self.skipped_inputs[0])}"
                + ("" if k == 1 else "; featstore -v names them all")
            )
        lines.extend(self._input_notes())
        lines.append(f"store: {printable(self.store)}")
        return "\n".join(lines)

    def _input_notes(self) -> list[str]:
        lines = [f"  warning: {w}" for w in self.warnings]
        if self.limit is not None:
            first = plural(self.limit, "identity", "identities")
            lines.append(f"  note: limited to the first {first} by name")
        return lines

    def _format_dry_run(self) -> str:
        lines = [
            *self._stand_in_lines(),
            f"dry run: would extract {plural(self.images_extracted, 'image')} of "
            f"{plural(self.identities_extracted, 'identity', 'identities')} on {self.device}; "
            f"{self.identities_skipped} of "
            f"{plural(self.identities_in_input, 'identity', 'identities')} up to date",
            "  models (the detector loaded; checkpoints checked, DINOv2 not loaded):",
            *(f"    {line}" for line in self.model_files),
            *self._input_notes(),
            f"store: {self.store} (nothing written)",
        ]
        return "\n".join(lines)
