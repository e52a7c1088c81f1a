"""``rsprep card``: the dataset card (README.md with Hugging Face front matter), its figures and
``croissant.json`` (docs/card.md)."""

from rsprep.card.make import CardOptions, CardResult, make_card

__all__ = ["CardOptions", "CardResult", "make_card"]
