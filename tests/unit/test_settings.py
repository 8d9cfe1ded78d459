"""Settings are the one home of every default: an unset variable gives the dataclass's default
(not a second copy in from_env), and the README's configuration table shows those defaults and
every variable Settings reads."""
from __future__ import annotations

import inspect
import re
from dataclasses import fields
from pathlib import Path
from typing import Any

from config.settings import PROJECT_ROOT, Settings

# README variables whose setting is named otherwise.
FIELD_OF = {"CELERY_BROKER_URL": "broker_url", "CELERY_RESULT_BACKEND": "result_backend",
            "CONVERSATION_VAR_DIR": "var_dir"}
_ROW = re.compile(r"^\| (`[A-Z_]+`(?:, `[A-Z_]+`)*) \| .* \| ([^|]*) \|$")


def readme_defaults() -> dict[str, str]:
    """README's configuration table: variable -> its default as written."""
    shown: dict[str, str] = {}
    for line in (PROJECT_ROOT / "README.md").read_text().splitlines():
        match = _ROW.match(line)
        if not match:
            continue
        names = re.findall(r"`([A-Z_]+)`", match.group(1))
        cells = [cell.strip() for cell in match.group(2).split(", ")]
        for name, cell in zip(names, cells if len(cells) == len(names) else [None] * len(names),
                              strict=True):
            shown[name] = cell if cell is not None else match.group(2).strip()
    return shown


def as_written(value: Any) -> str:
    if value in (None, "", 0) and not isinstance(value, bool):
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


def test_an_empty_environment_gives_the_dataclass_defaults(tmp_path: Path) -> None:
    # A var dir of its own: a running `make run` must not lend its embedded URLs.
    assert Settings.from_env({"CONVERSATION_VAR_DIR": str(tmp_path)}) == Settings(var_dir=tmp_path)


def test_empty_variables_count_as_unset(tmp_path: Path) -> None:
    names = set(re.findall(r'"([A-Z][A-Z_]+)"', inspect.getsource(Settings.from_env)))
    env = dict.fromkeys(names - {"CONVERSATION_VAR_DIR", "REDIS_KEY_PREFIX"}, "")
    env["CONVERSATION_VAR_DIR"] = str(tmp_path)
    assert Settings.from_env(env) == Settings(var_dir=tmp_path)


def test_the_readme_table_shows_every_variable_and_the_settings_defaults() -> None:
    shown = readme_defaults()
    read = set(re.findall(r'"([A-Z][A-Z_]+)"', inspect.getsource(Settings.from_env)))
    assert read - set(shown) == set(), "variables Settings reads that README does not list"
    default = Settings()
    names = {f.name for f in fields(Settings)}
    checked = 0
    for variable, cell in shown.items():
        name = FIELD_OF.get(variable, variable.lower())
        value = getattr(default, name, None)
        if name not in names or value is None or isinstance(value, Path) or " " in cell:
            continue  # not a setting of its own, or a default described in words
        assert cell == as_written(value), variable
        checked += 1
    assert checked >= 20
