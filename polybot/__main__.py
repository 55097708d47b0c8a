import sys

from polybot.cli import main

sys.exit(main())
