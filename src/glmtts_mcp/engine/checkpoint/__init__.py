"""The official checkpoint: layout and validation, loading, download, random tiny checkpoints."""
