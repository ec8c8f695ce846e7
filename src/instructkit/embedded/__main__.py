"""`python -m instructkit.embedded`: build the current preset into the cache (what `ensure_embedded` runs)."""

from instructkit.embedded import build_cached
from instructkit.errors import user_errors

if __name__ == "__main__":
    with user_errors():
        build_cached()
