"""``rsprep card``: the dataset card (README.md with Hugging Face front matter), its figures and
``croissant.json`` (docs/card.md)."""
