"""``python -m phalanx`` runs the CLI."""

import sys

from phalanx.cli import main

sys.exit(main())
