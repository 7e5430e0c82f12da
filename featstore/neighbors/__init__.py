"""Who is who: nearest identities and copied images from a model's embeddings (faiss).

`find_neighbors` (`featstore neighbors`) writes the store's neighbors table
(`featstore.store.neighbors`: views `identity_neighbors`, `duplicate_images`).
"""

from featstore.neighbors.run import DEFAULT_K, NeighborsResult, find_neighbors

__all__ = ["DEFAULT_K", "NeighborsResult", "find_neighbors"]
