"""``python -m ibkr_assets.cli``: the ``ibkr-agent`` command without its console script."""

import sys

from ibkr_assets.cli.commands import main

if __name__ == "__main__":
    sys.exit(main())
