"""``python -m ibkr_assets.settings [--readme README.md]``: the table of variables."""

from ibkr_assets.settings.table import main

raise SystemExit(main())
