from alignjax.eval.run import main

raise SystemExit(main())
