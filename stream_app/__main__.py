"""``python -m stream_app <command>``: the ``streamscore`` command."""

import sys

from stream_app.cli import main

sys.exit(main())
