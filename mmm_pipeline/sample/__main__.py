from mmm_pipeline.sample.generate import main

raise SystemExit(main())
