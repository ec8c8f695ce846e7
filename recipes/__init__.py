"""The recipes (scripts + configs/), installed with instructkit as `instructkit.recipes` (see instructkit.catalog)."""
