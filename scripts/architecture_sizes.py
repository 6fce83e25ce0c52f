"""Line counts of every room's modules, read from the code (the size tables of docs/architecture.md).

    python scripts/architecture_sizes.py            # Markdown: one table of rooms, then one per room
    python scripts/architecture_sizes.py --rooms    # the rooms table only

A room is a package folder (one holding `__init__.py`) of bridgex_index, index_builder or bridgex_serve;
its modules are the `.py` files directly in it. Lines are physical lines, as `wc -l` counts them. Nothing
is imported, so the script runs without torch, duckdb or any extra.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridgex_index", "index_builder", "bridgex_serve")


@dataclass(frozen=True)
class Module:
    name: str  # file stem, e.g. "pipeline"
    lines: int


@dataclass(frozen=True)
class Room:
    path: str  # repository-relative folder, e.g. "index_builder/indexing"
    modules: tuple[Module, ...]  # largest first

    @property
    def lines(self) -> int:
        return sum(m.lines for m in self.modules)


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def rooms(root: Path = ROOT) -> list[Room]:
    """Every package folder under the three packages, with its modules' line counts (largest first)."""
    found = []
    for package in PACKAGES:
        for init in sorted((root / package).rglob("__init__.py")):
            folder = init.parent
            modules = [Module(p.stem, count_lines(p)) for p in sorted(folder.glob("*.py"))]
            modules.sort(key=lambda m: (-m.lines, m.name))
            found.append(Room(folder.relative_to(root).as_posix(), tuple(modules)))
    return found


def rooms_table(found: list[Room]) -> str:
    rows = ["| room | modules | lines | largest module (lines) |", "| --- | ---: | ---: | --- |"]
    for room in found:
        top = room.modules[0] if room.modules else None
        largest = f"`{top.name}` ({top.lines})" if top else "–"
        rows.append(f"| `{room.path}/` | {len(room.modules)} | {room.lines} | {largest} |")
    return "\n".join(rows)


def room_table(room: Room) -> str:
    cells = ", ".join(f"`{m.name}` {m.lines}" for m in room.modules)
    return f"- `{room.path}/` ({room.lines} lines): {cells}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rooms", action="store_true", help="print the rooms table only")
    args = parser.parse_args()
    found = rooms()
    print(rooms_table(found))
    if not args.rooms:
        print()
        for room in found:
            print(room_table(room))


if __name__ == "__main__":
    main()
