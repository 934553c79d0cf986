"""Man pages made from the command line itself: ``pinspect(1)`` and ``pinspect-COMMAND(1)``.

Click has no man page writer, so this walks the click command tree (the group and every
registered command) and writes roff (man(7) macros). The pages are committed in
``pinspect/man/`` and installed with the package; a test regenerates them and compares.

    python3 -m pinspect.manpages [DIRECTORY]    # default: pinspect/man next to this file
"""

from __future__ import annotations

import pathlib
import sys

import click

from pinspect import __version__

MAN_DIR = pathlib.Path(__file__).parent / "man"

EXIT_STATUS = [
    ("0", "success (with --exit-status: no pinned page reported)."),
    ("1", "pinned --exit-status reported pinned pages; also when the reader of the output "
          "went away (a closed pipe)."),
    ("2", "usage error, or the target or its debug info cannot be opened or read (one line "
          "on standard error with a hint)."),
    ("3", "internal error (a bug: rerun with PINSPECT_DEBUG=1 for a traceback)."),
    ("130", "interrupted."),
]

ENVIRONMENT = [
    ("DEBUGINFOD_URLS", "debuginfod servers that drgn asks for the kernel's debug info when "
                        "none is installed."),
    ("NO_COLOR", "when set to a non-empty value, no colour is written."),
    ("PINSPECT_DEBUG", "when set, errors show Python tracebacks and drgn's log is not muted."),
    ("PINSPECT_CACHE", "cache directory (default ~/.cache/pinspect): rebuilt flattened dumps."),
    ("_PINSPECT_COMPLETE", "shell completion: bash_source, zsh_source or fish_source print the "
                           "completion script (see SHELL COMPLETION)."),
]

COMPLETION = [
    'bash: eval "$(_PINSPECT_COMPLETE=bash_source pinspect)" in ~/.bashrc',
    'zsh: eval "$(_PINSPECT_COMPLETE=zsh_source pinspect)" in ~/.zshrc',
    "fish: _PINSPECT_COMPLETE=fish_source pinspect > ~/.config/fish/completions/pinspect.fish",
]


def escape(text: str) -> str:
    """Text for roff: backslashes, dashes, and control characters at a line start."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line
                     for line in text.split("\n"))


def _help_parts(command: click.Command) -> tuple[list[str], list[str]]:
    """The docstring's paragraphs and its example lines (after ``Examples:``)."""
    text = click.unstyle(command.help or "")
    text, _, examples = text.partition("Examples:")
    paragraphs = []
    for block in text.split("\n\n"):
        lines = [line.strip() for line in block.splitlines()
                 if line.strip() and line.strip() != "\b"]
        if lines:
            paragraphs.append(" ".join(lines))
    example_lines = [line.strip() for line in examples.splitlines() if line.strip()]
    return paragraphs, example_lines


def _options(command: click.Command, ctx: click.Context) -> list[str]:
    out = []
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{escape(names)}\\fR", escape(help_text or "")]
    return out


def _header(name: str, summary: str) -> list[str]:
    title = escape(name.upper())
    return [
        f'.TH {title} 1 "" "pinspect {__version__}" "pinspect manual"',
        ".SH NAME",
        f"{escape(name)} \\- {escape(summary)}",
    ]


def command_page(command: click.Command, parent: click.Context) -> str:
    """``pinspect-NAME(1)`` for one command."""
    assert command.name is not None
    ctx = click.Context(command, info_name=command.name, parent=parent)
    paragraphs, examples = _help_parts(command)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = _header(f"pinspect-{command.name}", command.get_short_help_str(limit=200).rstrip("."))
    lines += [".SH SYNOPSIS", f"\\fBpinspect {command.name}\\fR {escape(usage)}",
              ".SH DESCRIPTION"]
    for i, paragraph in enumerate(paragraphs):
        lines += ([".PP"] if i else []) + [escape(paragraph)]
    lines += [".PP", "Inside drgn (the pinspect plugin) the command runs on the session's "
              f"program: \\fB%{command.name}\\fR or \\fB%pinspect {command.name}\\fR with the "
              "same options except \\-c, \\-s and \\-\\-qemu.",
              ".SH OPTIONS", *_options(command, ctx)]
    if examples:
        lines += [".SH EXAMPLES", ".nf", *(escape(e) for e in examples), ".fi"]
    lines += [".SH SEE ALSO", "\\fBpinspect\\fR(1), \\fBdrgn\\fR(1)"]
    return "\n".join(lines) + "\n"


def main_page(group: click.Group) -> str:
    """``pinspect(1)``: the global options, the commands, exit status and environment."""
    ctx = click.Context(group, info_name="pinspect")
    paragraphs, examples = _help_parts(group)
    commands = [group.commands[name] for name in group.list_commands(ctx)]
    lines = _header("pinspect", paragraphs[0].rstrip("."))
    lines += [".SH SYNOPSIS",
              "\\fBpinspect\\fR [\\fIGLOBAL OPTIONS\\fR] \\fICOMMAND\\fR [\\fIOPTIONS\\fR]",
              ".SH DESCRIPTION"]
    for i, paragraph in enumerate(paragraphs):
        lines += ([".PP"] if i else []) + [escape(paragraph)]
    lines += [".PP", "Global options may also be given after the command name. Without \\-c "
              "or \\-\\-qemu pinspect reads the running kernel through /proc/kcore (root only).",
              ".SH GLOBAL OPTIONS", *_options(group, ctx), ".SH COMMANDS"]
    for command in commands:
        lines += [".TP", f"\\fB{escape(command.name or '')}\\fR",
                  escape(command.get_short_help_str(limit=200)) +
                  f" See \\fBpinspect\\-{escape(command.name or '')}\\fR(1)."]
    lines += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        lines += [".TP", f"\\fB{code}\\fR", escape(meaning)]
    lines += [".SH ENVIRONMENT"]
    for name, meaning in ENVIRONMENT:
        lines += [".TP", f"\\fB{escape(name)}\\fR", escape(meaning)]
    lines += [".SH SHELL COMPLETION", ".nf", *(escape(c) for c in COMPLETION), ".fi",
              ".SH DRGN", "Installed next to drgn, pinspect is a drgn plugin: in "
              "\\fBdrgn \\-c vmcore \\-s vmlinux\\fR, \\fB%pinspect COMMAND\\fR (and "
              "\\fB%COMMAND\\fR where drgn has no command of that name) runs on the session's "
              "program; \\fBimport pinspect\\fR gives the Python API."]
    if examples:
        lines += [".SH EXAMPLES", ".nf", *(escape(e) for e in examples), ".fi"]
    see_also = [f"\\fBpinspect\\-{escape(c.name or '')}\\fR(1)" for c in commands]
    lines += [".SH SEE ALSO", ", ".join([*see_also, "\\fBdrgn\\fR(1)"])]
    return "\n".join(lines) + "\n"


def pages() -> dict[str, str]:
    """Every man page by file name."""
    from pinspect.cli import cli

    parent = click.Context(cli, info_name="pinspect")
    out = {"pinspect.1": main_page(cli)}
    for name in cli.list_commands(parent):
        out[f"pinspect-{name}.1"] = command_page(cli.commands[name], parent)
    return out


def write_pages(directory: pathlib.Path = MAN_DIR) -> list[pathlib.Path]:
    """Write every page into *directory* (and remove pages of commands that are gone)."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = pages()
    for stale in directory.glob("pinspect*.1"):
        if stale.name not in wanted:
            stale.unlink()
    written = []
    for name, text in wanted.items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_pages(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else MAN_DIR):
        print(written_path)
