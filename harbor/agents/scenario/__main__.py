"""``python -u -m harbor.agents.scenario``: see :mod:`harbor.agents.scenario.program`."""

import os
import sys

from harbor.agents.scenario.program import main

if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit: a daemon thread may be blocked reading stdin, and a normal interpreter shutdown can
    # abort on the stdin buffer's lock in that case.
    os._exit(code)
