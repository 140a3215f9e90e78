"""`python -m bigbird_pegasus.finetune ...`: the `finetune` command, for torchrun's `-m`. An entry point, like the
package's own `__main__`: it sits above every module and imports the command from `cli/`."""

from ..cli.finetune import main

raise SystemExit(main())
