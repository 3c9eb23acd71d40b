"""envkit's HTTP stub server (docs/stubs.md). Standard library only: it runs in its own small image."""
