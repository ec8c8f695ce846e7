"""Launch configs, installed with instructkit as `instructkit.accelerate_configs` (see instructkit.catalog)."""
