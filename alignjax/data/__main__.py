from alignjax.data.cli import main

raise SystemExit(main())
