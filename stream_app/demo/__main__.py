"""``python -m stream_app.demo``: see the package docstring."""

import sys

from stream_app.demo.run import main

sys.exit(main())
