"""The training Dataset: `FeatureDataset` over a store or the trainer's JSON.

Owns the sources (store views, new- and old-format JSON), the memory-mapped Arrow cache
every DataLoader worker shares, batching (`collate`) and `split_by_identity`.

May import: `featstore.store`, `featstore.trainer_json` (the JSON reader and the `where`
check), `featstore.extraction` (an old-format JSON holds only image paths, so its features
are extracted on first use) and `featstore.errors`.
"""

from featstore.dataset.feature_dataset import FeatureDataset, collate, split_by_identity

__all__ = ["FeatureDataset", "collate", "split_by_identity"]
