"""Form templates: the model (no I/O), the YAML loader, text rendering and lint."""
