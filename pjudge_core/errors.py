"""Errors a user can cause and fix. Each message is one readable sentence; the CLI and the app
print it as it is, without a traceback."""


class PJudgeError(Exception):
    """Base class for every error that is the user's input or environment, not a bug."""


class ModelLoadError(PJudgeError):
    """The model could not be loaded (unknown id, no network, not a model folder, no CUDA...)."""


class InputError(PJudgeError, ValueError):
    """A query, preference or decoding setting that cannot be used."""


OUT_OF_MEMORY = "The model's device ran out of memory for this request; lower max new tokens or tick fewer methods."


class OutOfMemory(PJudgeError, MemoryError):
    """The device ran out of memory for one request; the requests decoding beside it go on."""

    def __init__(self, message: str = OUT_OF_MEMORY):
        super().__init__(message)
