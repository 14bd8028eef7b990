"""Parse and format the memory sizes ("8g") and ISO 8601 durations ("P0DT5M") torc uses."""

from __future__ import annotations

import re

_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)i?b?\s*$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_DURATION = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?"
    r"(?:(?P<m>\d+(?:\.\d+)?)M)?(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_SLURM_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_memory(text: str) -> int:
    """Bytes in a size such as '512m', '8g', '1.5GB' or '1024' (binary units)."""
    match = _MEMORY.match(text)
    if not match:
        raise ValueError(f"invalid memory size {text!r}; use a number with k, m, g, t or p")
    number, unit = match.groups()
    return int(float(number) * 1024 ** _POWERS[unit.lower()])


def format_memory_gb(num_bytes: int) -> float:
    """Gigabytes (binary) as a float, as torc reports memory_gb."""
    return num_bytes / 1024**3


def parse_duration(text: str) -> float:
    """Seconds in an ISO 8601 duration like 'P0DT1H30M' (days and time parts only)."""
    match = _DURATION.match(text.strip().upper()) if text.strip() != "P" else None
    if not match or not any(match.groupdict().values()):
        raise ValueError(f"invalid ISO 8601 duration {text!r}; expected e.g. 'P0DT1H30M'")
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    return parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]


def format_duration(seconds: float) -> str:
    """ISO 8601 duration for a number of seconds, as torc writes it ('P0DT1H30M')."""
    total = round(seconds)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    text = f"P{days}DT"
    if hours:
        text += f"{hours}H"
    if minutes:
        text += f"{minutes}M"
    if secs or text.endswith("T"):
        text += f"{secs}S"
    return text


def parse_slurm_time(text: str) -> float:
    """Seconds in a Slurm time limit: 'MM', 'HH:MM:SS', 'D-HH', 'D-HH:MM' or 'D-HH:MM:SS'."""
    match = _SLURM_TIME.match(text.strip())
    if not match:
        raise ValueError(f"invalid Slurm time {text!r}; expected e.g. '04:00:00' or '1-00:00:00'")
    days, a, b, c = (int(x) if x else None for x in match.groups())
    if days is None:
        if b is None:  # minutes
            return float(a or 0) * 60
        if c is None:  # MM:SS
            return float(a or 0) * 60 + b
        return float(a or 0) * 3600 + b * 60 + c
    return days * 86400 + (a or 0) * 3600 + (b or 0) * 60 + (c or 0)
