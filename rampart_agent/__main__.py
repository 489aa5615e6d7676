"""`python -m rampart_agent`: the same command line as `rampart-agent`."""

import sys

from rampart_agent.cli import main

sys.exit(main())
