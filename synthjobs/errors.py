"""The domain errors the API maps to status codes and the worker maps to job outcomes."""

from __future__ import annotations


class SynthJobsError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigurationError(SynthJobsError):
    """The settings cannot run this process safely (a missing secret); it refuses to start."""


class JobNotFound(SynthJobsError):
    """No job has that id."""


class ModelNotFound(SynthJobsError):
    """No trained model matches that reference."""


class InvalidTransition(SynthJobsError):
    """A job was asked to move between states the state machine does not connect."""


class DeletionRefused(SynthJobsError):
    """A job's outputs cannot be deleted while something still depends on them (a registered model)."""


class JobFailure(SynthJobsError):
    """An expected, permanent failure of a job (bad data, diverged training): fail once, never retry."""


class StorageError(SynthJobsError):
    """Storage could not be reached or refused an operation; `transient` when a retry may succeed."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class InvalidKey(StorageError, ValueError):
    """An object key that could escape its root or is not one the service builds."""


class ObjectNotFound(StorageError):
    """No object is stored under that key."""


class DatasetNotFound(SynthJobsError):
    """No uploaded dataset has that id."""


class InvalidRequest(SynthJobsError, ValueError):
    """A request that cannot be carried out as asked; `loc` names the field (the API answers 422)."""

    def __init__(self, loc: tuple[str, ...], message: str, kind: str = "value_error") -> None:
        super().__init__(message)
        self.loc, self.kind = loc, kind
