"""``abstractruntime completion bash|zsh|fish``: the shell script that completes commands, options and choices.

The completions come from the parser itself (``argcomplete``): a command a newly installed plugin contributes is
completed without regenerating the script. Install (docs/cli.md, Shell completion)::

    abstractruntime completion bash > ~/.local/share/bash-completion/completions/abstractruntime
    abstractruntime completion zsh > "${fpath[1]}/_abstractruntime"
    abstractruntime completion fish > ~/.config/fish/completions/abstractruntime.fish
"""

from __future__ import annotations

import sys
from typing import Any


def completion(args: Any, runtime: Any) -> int:
    import argcomplete

    script = argcomplete.shellcode(["abstractruntime"], shell=args.shell)
    if args.json:
        from abstractruntime_cli.output import emit_json

        emit_json({"shell": args.shell, "script": script})
    else:
        sys.stdout.write(script)
    return 0


__all__ = ["completion"]
