"""python3 -m ntkpost ...: the ntkplot command (ntkpost.cli)."""
import sys

from .cli import main

sys.exit(main())
