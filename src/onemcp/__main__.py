"""`python -m onemcp` is the `onemcp` command."""

import sys

from onemcp.cli.main import main

sys.exit(main())
