"""`python -m nanokube.cli` is `nanokube` (the test harness starts the server this way)."""

import sys

from nanokube.cli.main import main

sys.exit(main())
