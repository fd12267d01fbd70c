"""The smallest Textual app that shows a trace's first records: ``compare_toolong.py``'s floor for a first screen.

It reads the file's first 40 lines with plain Python and shows them as the text of one ``Static``, with Textual's
default styles: no CSS of its own, no widgets beyond it, no index, no summary. Its time to a first screen is what
importing Textual, starting its app and drawing one frame costs on this machine in these minutes, which moves by
2-3x here from one quarter of an hour to the next; a viewer's first screen is read against it.

    python benchmarks/textual_floor_app.py FILE
"""

from __future__ import annotations

import sys
from itertools import islice

from textual.app import App, ComposeResult
from textual.widgets import Static


class Floor(App[None]):
    def __init__(self, rows: str) -> None:
        super().__init__()
        self.rows = rows

    def compose(self) -> ComposeResult:
        yield Static(self.rows, markup=False)


def main() -> int:
    with open(sys.argv[1], "rb") as fh:
        rows = "\n".join(line[:118].decode("utf-8", "replace").rstrip() for line in islice(fh, 40))
    Floor(rows).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
