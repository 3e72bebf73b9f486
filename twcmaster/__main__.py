import sys

from twcmaster.cli import main

sys.exit(main())
