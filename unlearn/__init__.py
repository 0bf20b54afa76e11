"""unlearn: make trained models forget data on request.

The library knows about models, data, forgetting, checking and storing. The `api`
and `workers` packages are thin layers over it; nothing here imports them.
"""

__version__ = "0.1.0"
