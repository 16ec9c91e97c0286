from .cli import console_main
import sys

sys.exit(console_main())
