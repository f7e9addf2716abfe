from nbcore.cli.main import main

raise SystemExit(main())
