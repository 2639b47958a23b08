"""``python -m fastdqn``: the same as the ``fastdqn`` command."""

from fastdqn.cli import main

raise SystemExit(main())
