"""``python -m tests.emulator``: see server.py and docs/emulator.md."""

import sys

from .server import main

sys.exit(main())
