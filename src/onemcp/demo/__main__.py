"""``python -m onemcp.demo``: run the demo upstream over stdio."""

from onemcp.demo.server import main

main()
