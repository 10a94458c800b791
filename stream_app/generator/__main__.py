"""Entry point: ``python -m stream_app.generator --help``."""

from stream_app.generator.cli import main

raise SystemExit(main())
