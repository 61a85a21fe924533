"""Errors a user can meet. Each one prints as a single line; the CLI exits with `exit_code`."""
from __future__ import annotations


class CxrbenchError(Exception):
    """A problem with the user's input: data, card, checkpoint, policy, options.

    The message says what was expected, what was found, and where (file, row, field).
    """

    exit_code = 2

    def __init__(self, message: str, *, where: str | None = None):
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class DataError(CxrbenchError):
    """A manifest, image or mask that cannot be used."""


class CardError(CxrbenchError):
    """A model card that is missing, malformed or cannot be matched to the label space."""


class CheckpointError(CxrbenchError):
    """A checkpoint that cannot be loaded, or may not be loaded without trust."""


class ModelOutputError(CxrbenchError):
    """A model that returned the wrong shape, NaN or inf."""


class RegistryError(CxrbenchError):
    """An unknown name in one of the registries."""


class UserFacingWarning(UserWarning):
    """A warning meant for the user: the CLI shows it as one line, even when it hides library chatter."""


class ModelWarning(UserFacingWarning):
    """A model that runs but looks wrong, e.g. the same output for every image."""
