"""The trainer's JSON: the seed's `valid_images.json`, written, read back and checked.

Owns `export-json` (store -> JSON), `import-json` (JSON -> store) and `validate` (is this
file what the trainer expects?), with the streaming JSON reader they share.

May import: `featstore.store`, `featstore.extraction.dinov2_specs` (model dims) and
`featstore.errors`.
"""
