"""The GPT-style transformer (docs/design.md §3): the model (`model`) and its training run
(`train`)."""
