"""face000's npy training directory (docs/formats.md, docs/formats.md): eight files that the seed's
`train_transformer3D/extract_and_align_3d_data.py` writes and three of its trainers read.

- `layout`: the one declaration of the eight files (names, dtypes, shapes, JSON keys and
  their order, failure kinds) and the seed's normalisation (`standard_info`, keypoints).
- `json_text`: Python's `json.dump(obj, f, indent=2, ensure_ascii=False)` text, streamed.
- `npy_blocks`: `.npy` files written a row block at a time, and headers read safely.
- `store_scan`: the store's rows in the seed's order, with the pose re-solved in float64.
- `export` (`export-npy`), `import_` (`import-npy`), `reading` (a directory read and
  checked, shared by import, validate and the Dataset), `validate`.

May import `featstore.store`, `featstore.extraction.pose` (the seed's pose solver) and
`featstore.trainer_json` (the `--where` and atomic-write helpers export-json uses).
"""
