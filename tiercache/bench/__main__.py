"""``python -m tiercache.bench``: the ``tiercache`` command without its console script."""

from .cli import main

raise SystemExit(main())
