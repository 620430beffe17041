"""Errors a user can cause and fix. Each message is one readable sentence; the CLI and the app
print it as it is, without a traceback."""


class PJudgeError(Exception):
    """Base class for every error that is the user's input or environment, not a bug."""


class ModelLoadError(PJudgeError):
    """The model could not be loaded (unknown id, no network, not a model folder, no CUDA...)."""


class InputError(PJudgeError, ValueError):
    """A query, preference or decoding setting that cannot be used."""
