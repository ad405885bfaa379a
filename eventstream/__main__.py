"""``python -m eventstream URL``: the command-line tool (see ``eventstream --help``)."""

from __future__ import annotations

import sys

from eventstream._cli import main

if __name__ == "__main__":
    sys.exit(main())
