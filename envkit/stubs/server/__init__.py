"""Build context of the stub image (see envkit.stubs.image)."""
