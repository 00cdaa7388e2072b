import argparse

from mmm_pipeline.sample.offfamily import STRUCTURES, generate, truth_path_for

ap = argparse.ArgumentParser(prog="python -m mmm_pipeline.sample.offfamily",
                             description="Write an off-family input folder and its truth beside it.")
ap.add_argument("structure", choices=STRUCTURES)
ap.add_argument("out_dir")
ap.add_argument("--seed", type=int, default=1)
a = ap.parse_args()
truth = generate(a.structure, a.out_dir, a.seed)
print(f"wrote {a.out_dir} and {truth_path_for(a.out_dir)} ({a.structure}, seed {a.seed}); "
      f"media share {truth['media_share']:.1%}")
