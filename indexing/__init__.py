"""Indexing: corpus readers, language handling, channel writers, the builder and the manifest."""
