"""One root exception for everything tuquan raises on purpose."""


class TuquanError(Exception):
    """Root of tuquan's own errors."""


class ConfigError(TuquanError):
    """A configuration that cannot run; ``errors`` holds (path, message) pairs."""

    def __init__(self, errors: list[tuple[str, str]]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{path}: {msg}" if path else msg for path, msg in errors))


class HardwareError(TuquanError):
    """A GPIO device that cannot be opened; the message names it, its pin, why and what to do.

    ``device`` is how the config names it (``input 'panic-1'``), ``pin`` its BCM GPIO number.
    """

    def __init__(self, device: str, pin: int | None, message: str) -> None:
        self.device = device
        self.pin = pin
        super().__init__(message)
