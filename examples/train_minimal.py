"""Train a small model on a featstore store (or the trainer's JSON) for a few steps.

    python examples/train_minimal.py --source demo-output/store
    python examples/train_minimal.py --source valid_images.json --steps 200

The task is the seed trainer's: from a face's DINOv2 features seen at some angle, plus
the `spherical_angles` position encoding of where its landmarks moved, predict the
features of the same person's frontal image. The model predicts the residual
(target - input), a small transformer over the feature vector split into tokens.
Train and validation are split by identity, so no person is in both.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import DataLoader

import featstore


class ResidualTransformer(nn.Module):
    """Features as `tokens` tokens, the angle code added to each, a residual out."""

    def __init__(self, dim: int, tokens: int = 8, width: int = 64, layers: int = 2) -> None:
        super().__init__()
        if dim % tokens:
            raise ValueError(f"feature dim {dim} is not a multiple of {tokens} tokens")
        self.tokens = tokens
        self.embed = nn.Linear(dim // tokens, width)
        self.angles = nn.Linear(5, width)
        self.slots = nn.Parameter(torch.zeros(tokens, width))
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=2 * width)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.head = nn.Linear(width, dim // tokens)

    def forward(self, features: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        batch = features.shape[0]
        x = self.embed(features.view(batch, self.tokens, -1))
        x = x + self.slots + self.angles(angles).unsqueeze(1)
        return self.head(self.encoder(x.transpose(0, 1)).transpose(0, 1)).reshape(batch, -1)


def evaluate(model: nn.Module, loader: DataLoader) -> tuple[float, float]:
    """Mean squared error on the residual, and mean cosine similarity to the target."""
    model.eval()
    losses, cosines = [], []
    with torch.no_grad():
        for batch in loader:
            predicted = model(batch["input_features"], batch["position_encoding"])
            losses.append(nn.functional.mse_loss(predicted, batch["target_residual"]).item())
            frontal = batch["input_features"] + predicted
            cosine = nn.functional.cosine_similarity(frontal, batch["target_features"])
            cosines.append(cosine.mean().item())
    model.train()
    return sum(losses) / max(len(losses), 1), sum(cosines) / max(len(cosines), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="a featstore store or trainer JSON")
    parser.add_argument("--model", help="DINOv2 model, if the store holds several")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.2)
    args = parser.parse_args()

    torch.manual_seed(0)
    dataset = featstore.FeatureDataset(args.source, model=args.model)
    train, val = featstore.split_by_identity(dataset, val_fraction=args.val_fraction, seed=0)
    print(f"{dataset}\ntrain {len(train)} samples, validation {len(val)} samples")
    loader = DataLoader(
        train,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=len(train) > args.batch_size,
        num_workers=args.workers,
        persistent_workers=args.workers > 0,
        collate_fn=featstore.collate,
    )
    val_loader = DataLoader(val, batch_size=256, collate_fn=featstore.collate)

    model = ResidualTransformer(dataset.dim)
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    print(f"before training: validation loss {evaluate(model, val_loader)[0]:.6f}")
    started, step = time.perf_counter(), 0
    while step < args.steps:
        for batch in loader:
            predicted = model(batch["input_features"], batch["position_encoding"])
            loss = nn.functional.mse_loss(predicted, batch["target_residual"])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            step += 1
            if step % 10 == 0 or step == 1:
                print(f"step {step:4d}  train loss {loss.item():.6f}")
            if step == args.steps:
                break
    val_loss, cosine = evaluate(model, val_loader)
    print(
        f"after {step} steps ({time.perf_counter() - started:.1f} s): validation loss "
        f"{val_loss:.6f}, cosine(predicted frontal, frontal) {cosine:.4f}"
    )


if __name__ == "__main__":  # DataLoader workers may be spawned: keep the guard
    main()
