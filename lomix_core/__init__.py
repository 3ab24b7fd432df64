"""LoMix kit."""
