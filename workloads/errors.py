"""The one error type that input problems raise; ``str(err)`` is a single line naming the field and the fix."""


def one_line(text: str) -> str:
    """Escape newlines and other unprintable characters (user input echoed back must not break the line)."""
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(text))


class ScenarioError(ValueError):
    """An invalid scenario, preset, override or input file. The message is forced onto one line."""

    def __init__(self, message: str):
        super().__init__(one_line(message))
