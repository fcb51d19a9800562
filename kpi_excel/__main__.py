from kpi_excel.cli import main

raise SystemExit(main())
