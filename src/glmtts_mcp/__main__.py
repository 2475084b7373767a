from glmtts_mcp.cli import main

raise SystemExit(main())
