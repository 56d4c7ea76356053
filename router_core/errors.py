"""Exceptions raised by the routing core."""


class RouterCoreError(Exception):
    """Base class of every error the routing core raises on purpose."""


class HistoryFormatError(RouterCoreError):
    """A history file is missing a column, has a malformed one, or cannot be read."""


class IndexMismatchError(RouterCoreError):
    """A saved index does not match the configured embedding model or history data."""


class ConfigurationError(RouterCoreError):
    """Parameters that cannot work together (an unknown policy, a bad split name, ...)."""


class EmbedderModelError(RouterCoreError):
    """The configured embedder's model is missing, corrupt or distilled from another teacher."""
