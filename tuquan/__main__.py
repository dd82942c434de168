"""``python -m tuquan``: the same as the ``tuquan`` command."""

from tuquan.cli import main

raise SystemExit(main())
