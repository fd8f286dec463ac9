from runpoller.cli.main import main

raise SystemExit(main())
