"""`bridgex-index`: build a bridge index, read it (bridges, similarity, plots, provenance), evaluate and
calibrate it. Thin click commands in `build_cmds`, `inspect_cmds` and `eval_cmds` parse and validate, then
hand over; every user error ends in one line on stderr and exit code 2 (`common.fails_cleanly`).
"""

from __future__ import annotations

import click

from .. import __version__
from .build_cmds import build, convert
from .eval_cmds import calibrate_cmd, distill_cmd, eval_cmd
from .inspect_cmds import bridges_cmd, health, plot, show, similarity
from .route_cmd import route_cmd


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bridgex-index")
def main() -> None:
    """Build and inspect BridgeX bridge indexes (language neurons, overlaps, HSIC bridge scores)."""


for command in (
    build,
    convert,
    bridges_cmd,
    similarity,
    plot,
    show,
    health,
    route_cmd,
    eval_cmd,
    calibrate_cmd,
    distill_cmd,
):
    main.add_command(command)
