"""Extraction: from an image tree to rows (the `extract` command).

Owns the input scan, decoding, InsightFace detection, the DINOv2 models and their weights,
the pseudo-3D landmarks and angles, the rows of one identity, and the two engines that run
it all (local and Ray), which share `extractor.Extractor`.

May import: `featstore.store` (to plan against and write into a store) and
`featstore.errors`. Nothing here imports the trainer's JSON, the Dataset or the report.
"""

# The logger of the periodic progress line (`extract --no-progress`); here, not in the
# engine's module, so the command line can name it without importing torch.
PROGRESS_LOGGER = "featstore.progress"
