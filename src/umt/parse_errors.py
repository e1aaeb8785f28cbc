"""Parse errors of jsonargparse and LightningCLI (usage plus a nested report) as one line naming the option and the
fix; ``OneLineErrors`` gives a parser that raises them as ``UsageError`` for ``umt.errors.reported`` to print."""

from __future__ import annotations

import difflib
import re
from typing import Any, NoReturn

from umt.errors import UsageError, debug

STRUCTURE = (
    "Does not validate against any of the Union subtypes",
    "Subtypes:",
    "Errors:",
    "Given value type:",
    "Given value:",
    "Parser key",
    "Problem with given class_path",
    "Expected a path but",
    "Expected a <class 'NoneType'>",
)
"""Lines of jsonargparse's nested report that carry no reason of their own."""


def one_line_parse_error(message: str, help_command: str, options: list[str], positional: bool) -> str:
    """jsonargparse's ``message`` as one line: the option, the value and what to do.

    Args:
        message: the parser's error message (possibly many lines).
        help_command: the command whose ``--help`` lists the options (``umt fit``).
        options: the option strings the parser knows, for a "did you mean".
        positional: whether required values are positional arguments (the library's commands) or options
            (LightningCLI).
    """
    first = message.strip().splitlines()[0] if message.strip() else message
    if match := re.match(r"unrecognized arguments: (.*)", first):
        return _unknown(match.group(1).split(), help_command, options)
    if match := re.match(r"the following arguments are required: (.*)", first):
        return _missing([name.strip() for name in match.group(1).split(",")], help_command, positional)
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys:
        return " ".join(first.split())
    option = "--" + ".".join(keys)
    value = next((m.group(1) for m in re.finditer(r"(?:Given|Got) value: (.*)", message)), None)
    class_path = re.search(r"Problem with given class_path '([^']+)'", message)
    reasons = _reasons(message)
    expected = re.findall(r"Expected a <class '([\w.]+)'>", message)
    if class_path:  # the None of the class's own union (``data: LightningDataModule | None``) is not this key's
        expected = [name for name in expected if name != "NoneType"]
    if rejected := next(
        (re.match(r"Option '([^']+)' is not accepted", r) for r in reasons if "not accepted" in r), None
    ):
        target = f" of {class_path.group(1)}" if class_path else ""
        return f"unknown option {option}.{rejected.group(1)}{target}; {help_command} --help lists the options"
    if any(reason.startswith("Expected a dot import path") for reason in reasons):
        return (
            f"{option} {value}: neither an installed name nor a class path (module.Class); `umt heads` and "
            "`umt datamodules` list the installed ones"
        )
    if expected and all(reason.startswith("Expected a <class") for reason in reasons):
        names = " or ".join(dict.fromkeys("None" if name == "NoneType" else name for name in expected))
        return f"{option} {value}: expected {names}"
    if class_path and reasons:
        if reasons[0].startswith("No module named"):
            return f"{option} {class_path.group(1)}: cannot import it ({reasons[0]}); check the class path"
        return f"{option} {class_path.group(1)}: {reasons[0]}"
    reason = reasons[0] if reasons else first
    return f"{option}{'' if value is None else ' ' + value}: {reason}"


def _reasons(message: str) -> list[str]:
    """The lines of ``message`` that say what is wrong (the report's structure left out), innermost last."""
    lines = []
    for line in message.splitlines():
        text = line.strip().removeprefix("- ").strip()
        if match := re.match(r'Parser key "[^"]+":\s*(.+)', text):
            text = match.group(1)  # a reason on the key's own line
        elif text.startswith(STRUCTURE):
            continue
        if text and not text.startswith(STRUCTURE):
            lines.append(" ".join(text.split()))
    return lines


def _unknown(tokens: list[str], help_command: str, options: list[str]) -> str:
    dashed = [token for token in tokens if token.startswith("-")]
    if not dashed:
        return f"unexpected argument {tokens[0]!r}; {help_command} --help lists the arguments"
    option = dashed[0].split("=", 1)[0]
    close = difflib.get_close_matches(option, options, n=1)
    hint = f"did you mean {close[0]}? " if close else ""
    return f"unknown option {option}; {hint}{help_command} --help lists the options"


def _missing(names: list[str], help_command: str, positional: bool) -> str:
    if positional:  # names are subcommand.argument: info.checkpoint, data.check.annotation
        command = " ".join(["umt", *names[0].split(".")[:-1]])
        arguments = " ".join(name.rsplit(".", 1)[-1].upper() for name in names)
        return f"missing {arguments}: {command} {arguments} ... (see {command} --help)"
    options = ", ".join("--" + name.split(".", 1)[-1] for name in names)
    return f"missing {options}: give them in a recipe (--config RECIPE.yaml) or as options"


class OneLineErrors:
    """Mixin for a jsonargparse ``ArgumentParser``: an error that would print the usage and exit raises
    ``UsageError`` with one line instead (``UMT_DEBUG`` / ``--traceback``: jsonargparse's full report); options are
    never abbreviated (``--trainer.max_epoch`` is unknown, not ``--trainer.max_epochs``)."""

    positional_required = True
    """Whether required values are positional arguments."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if getattr(self, "exit_on_error", True) and not debug():
            parser: Any = getattr(ex, "subcommand_parser", None) or self
            help_command = " ".join(["umt", *parser.prog.replace(" [options]", "").split()[1:]])
            options = [option for action in parser._actions for option in action.option_strings]
            raise UsageError(one_line_parse_error(message, help_command, options, self.positional_required))
        super().error(message, ex)  # type: ignore[misc]
