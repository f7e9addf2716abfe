from nbcore.cli import main

raise SystemExit(main())
