"""`featstore neighbors`: duplicate identities and copied images, from a model's embeddings.

A thin adapter over `featstore.neighbors.find_neighbors`; the pairs shown are read back
through the store's views (`identity_neighbors`, `duplicate_images`).
"""

from __future__ import annotations

import click
from featstore_cli.common import library_errors
from featstore_cli.options import model_option, store_option

_SHOWN = 10


@click.command()
@store_option()
@model_option(
    "The model whose embeddings are searched [default: the store's ArcFace model]. "
    "A DINOv2 model finds copied images, not people."
)
@click.option(
    "--k",
    type=int,
    help="Nearest identities (and images) kept per identity (image) [default: 10, or "
    "fewer when the store has fewer identities].",
)
@click.option(
    "--threshold",
    type=float,
    help="Cosine from which two identities are suspected to be one person [default: 0.5 "
    "for ArcFace, 0.95 for DINOv2].",
)
@click.option(
    "--copy-threshold",
    type=float,
    help="Cosine from which two images are suspected to be copies [default: 0.95].",
)
@click.option(
    "--exact-limit",
    type=int,
    help="Search exactly up to this many vectors [default: 200000]; above it with an "
    "approximate (IVF) index tuned to 0.99 top-K recall on a sample (exact again where that "
    "costs as much). Raise it to keep a large store exact; lower it to try approximate "
    "search on a small one.",
)
@library_errors
def neighbors(
    store: str,
    model: str | None,
    k: int | None,
    threshold: float | None,
    copy_threshold: float | None,
    exact_limit: int | None,
) -> None:
    """Find identities that may be one person and images that may be one image.

    Results go to the store's neighbors table (views identity_neighbors, duplicate_images;
    --where macros duplicate_identity(identity), duplicate_image(image_path)); a rerun on
    an unchanged store commits nothing.
    """
    from featstore.errors import printable
    from featstore.neighbors import find_neighbors
    from featstore.store.neighbors import copied_images, suspected_pairs
    from featstore.store.store import Store

    opened = Store(store)
    result = find_neighbors(
        opened,
        model=model,
        k=k,
        threshold=threshold,
        copy_threshold=copy_threshold,
        exact_limit=exact_limit,
    )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo(
        f"model {result.model} (version {result.model_version}): {result.identities} "
        f"identities, {result.images} images with an embedding; K = {result.k}"
    )
    for why, count in result.excluded.items():
        click.echo(f"  left out: {count} ({why})")
    for search, method in result.methods.items():
        click.echo(f"  {search}: {method}")
    state = (
        f"written in {result.seconds:.1f} s"
        if result.committed
        else "up to date (the model's table has not changed since)"
    )
    click.echo(f"neighbors table version {result.version}: {state}")
    with opened.connect(model=result.model) as con:
        pairs, total = suspected_pairs(con, result.model, _SHOWN)
        click.echo(f"\nsuspected same person (cosine >= {result.threshold:g}): {total} pairs")
        for p in pairs:
            click.echo(
                f"  {p.cosine:.4f}  {printable(p.identity)} ~ {printable(p.other)}  ({p.vectors})"
            )
        for same, title in ((False, "in two identities"), (True, "within one identity")):
            copies, total = copied_images(con, result.model, same_identity=same, limit=_SHOWN)
            click.echo(
                f"\ncopied images {title} (cosine >= {result.copy_threshold:g}): {total} pairs"
            )
            for c in copies:
                click.echo(
                    f"  {c.cosine:.4f}  {printable(c.path)} ({printable(c.identity)}) = "
                    f"{printable(c.other_path)} ({printable(c.other_identity)})"
                )
