"""The static STAC catalogue: describes what the lake holds, writes and validates it."""
