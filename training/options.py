"""Command-line options generated from a pydantic configuration: each field is settable and documented once."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel, ValidationError

Command = TypeVar("Command", bound=Callable[..., Any])


def config_options(
    model: type[BaseModel], into: str, prefix: str = "", skip: frozenset[str] = frozenset()
) -> Callable[[Command], Command]:
    """Adds a `--<prefix>-<field>` option per field of `model` to a typer command.

    The command receives the options that were given as one dict in its parameter `into` (fields left out
    are absent, so presets and defaults apply); pydantic validates and converts them once, so every option
    is read as text (or a flag for booleans) and its help is the field's description with its default.
    """

    def decorate(command: Command) -> Command:
        signature = inspect.signature(command, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name != into]
        generated = {}
        for name, field in model.model_fields.items():
            if name in skip:
                continue
            flag = f"--{prefix}-{name}" if prefix else f"--{name}"
            flag = flag.replace("_", "-")
            is_flag = field.annotation is bool
            default = field.get_default(call_default_factory=True)
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            option = typer.Option(
                f"{flag}/--no-{flag[2:]}" if is_flag else flag,
                help=f"{field.description} [default: {shown}]",
                show_default=False,
            )
            parameter = f"{prefix}_{name}" if prefix else name
            annotation = Annotated[bool | None if is_flag else str | None, option]  # type: ignore[valid-type]
            generated[parameter] = (name, inspect.Parameter(parameter, inspect.Parameter.KEYWORD_ONLY, default=None,
                                                            annotation=annotation))  # fmt: skip

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            given = {field: kwargs.pop(parameter) for parameter, (field, _) in generated.items()}
            return command(**kwargs, **{into: {k: v for k, v in given.items() if v is not None}})

        wrapper.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=[*kept, *(p for _, p in generated.values())]
        )
        return wrapper  # type: ignore[return-value]

    return decorate


def describe(error: ValidationError, prefix: str = "") -> str:
    """'--layers: must be one or more positive sizes; --optimizer: Input should be ...' for a user to act on."""
    parts = []
    for e in error.errors():
        field = "-".join(str(part) for part in e["loc"]).replace("_", "-")
        parts.append(f"--{prefix + '-' if prefix else ''}{field}: {str(e['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts)
