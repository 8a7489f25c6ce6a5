"""User-facing errors. Anything raised as a MozartError is printed as one clear line (no traceback), exit code 2."""


class MozartError(Exception):
    """An error caused by the user's input or environment, with a message that says what to do."""


class ConfigError(MozartError):
    """params.yaml or a command-line option is invalid."""


class DataError(MozartError):
    """The corpus or an intermediate artifact is missing, empty or unusable."""


class TrainingError(MozartError):
    """Training cannot go on usefully (e.g. it diverged); nothing broken was written."""
