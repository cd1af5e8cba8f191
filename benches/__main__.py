"""``python -m benches``: see benches.runner."""

from benches.runner import main

raise SystemExit(main())
