"""PyInstaller's entry script: the frozen `bulk-mailer` program is bridge.main, as installed."""

import sys

from bridge import main

if __name__ == "__main__":
    sys.exit(main())
