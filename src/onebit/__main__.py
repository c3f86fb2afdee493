"""``python -m onebit``: the same as the ``onebit`` command."""

import sys

from .cli import main

sys.exit(main())
