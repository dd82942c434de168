"""One root exception for everything tuquan raises on purpose."""


class TuquanError(Exception):
    """Root of tuquan's own errors."""


class ConfigError(TuquanError):
    """A configuration that cannot run; ``errors`` holds (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in errors))
