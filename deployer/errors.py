"""Errors a user can act on.

Every failure the tool expects ends as a `DeployerError`: the command-line layer
prints its one-paragraph message (what went wrong, where, what to do) and exits
with its code, without a traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


class DeployerError(Exception):
    """A failure explained to the user: what happened, where, and what to do."""

    exit_code = EXIT_USER_ERROR

    def __init__(self, what: str, where: str = "", todo: str = "") -> None:
        self.what = what
        self.where = where
        self.todo = todo
        super().__init__(self.message)

    @property
    def message(self) -> str:
        parts = [self.what.rstrip(".") + "."]
        if self.where:
            parts.append(f"Where: {self.where.rstrip('.')}.")
        if self.todo:
            parts.append(self.todo.rstrip(".") + ".")
        return " ".join(parts)


class SettingsError(DeployerError):
    """A setting from the defaults, deploy.toml or a flag is invalid."""


class StateFileError(DeployerError):
    """The state file cannot be used; it is left untouched."""


class AwsSetupError(DeployerError):
    """Credentials, region or endpoint are missing or wrong."""


class AwsCallError(DeployerError):
    """AWS refused a call made by one step."""

    def __init__(self, step: str, resource: str, operation: str, code: str, aws_message: str) -> None:
        self.step = step
        self.code = code
        super().__init__(
            what=f"AWS refused {operation} ({code}): {aws_message}",
            where=f"step '{step}', {resource}",
            todo="Fix the cause AWS names (permissions, quotas or settings), then run the same command "
            "again; everything already created is recorded in the state file and will be reused",
        )


class ResourceDriftError(DeployerError):
    """A found resource differs in a property AWS cannot change in place."""


class ForeignResourceError(DeployerError):
    """A resource has the name this stack would use but not this stack's tags: never adopted, changed or deleted."""

    def __init__(self, step: str, resource: str, name: str, *, what: str, where: str, todo: str) -> None:
        self.step = step
        self.resource = resource
        self.name = name
        super().__init__(what, where, todo)


class WaitTimeoutError(DeployerError):
    """A resource did not reach the wanted status in time."""


class StoppedError(Exception):
    """Raised at a wait or retry pause of a step told to stop because another step of its run failed
    (deployer/parallel.py): not a failure of its own, and never shown to the user."""
