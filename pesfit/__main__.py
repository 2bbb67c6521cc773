"""``python -m pesfit``: the same as the ``pesfit`` command."""
import sys

from .cli import main

sys.exit(main())
