"""`python -m bigbird_pegasus.finetune ...`: the `finetune` command, for torchrun's `-m`."""

from .command import main

raise SystemExit(main())
