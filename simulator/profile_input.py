"""A calibration profile named by the user (``--profile``, a sweep spec's ``profile``): loaded, or refused in one
line naming the file and the field that is wrong."""

from __future__ import annotations

from pydantic import ValidationError

from moesim.calibration.profile import BUILTIN_PROFILES, Profile, load_profile
from moesim.workloads.errors import ScenarioError
from moesim.workloads.files import check_input
from moesim.workloads.loader import format_validation_error

MAX_PROFILE_BYTES = 50_000_000  # a profile with every kernel point of a full calibration run is a few MB


def user_profile(spec: str | None, flag: str = "--profile") -> list[Profile] | None:
    """The profiles ``spec`` names, in pricing order (a comma list of built-in names and profile JSON files), or
    None when it names none (the scenario's GPU then picks its built-in stack); a ScenarioError (one line: flag,
    file, field and reason) for anything else."""
    if spec is None:
        return None
    names = [name.strip() for name in spec.split(",")]
    if not all(names):
        raise ScenarioError(f"{flag} {spec!r}: an empty name in the list; give names or files separated by commas")
    return [_one_profile(name, flag) for name in names]


def _one_profile(name_or_path: str, flag: str) -> Profile:
    if name_or_path not in BUILTIN_PROFILES:
        check_input(name_or_path, MAX_PROFILE_BYTES, f"{flag} file",
                    f"built-in profiles: {', '.join(BUILTIN_PROFILES)}")
    try:
        return load_profile(name_or_path)
    except ValidationError as err:
        raise ScenarioError(f"{flag} {name_or_path}: {format_validation_error(err)}") from None
    except ScenarioError as err:  # from the document reader, which names the file already
        raise ScenarioError(f"{flag} {err}") from None
    except (OSError, ValueError, KeyError) as err:
        raise ScenarioError(f"{flag} {name_or_path}: {str(err).splitlines()[0] if str(err) else type(err).__name__}") \
            from None
