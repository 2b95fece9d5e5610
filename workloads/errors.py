"""The one error type that input problems raise; ``str(err)`` is a single line naming the field and the fix."""


class ScenarioError(ValueError):
    """An invalid scenario, preset, override or input file."""
