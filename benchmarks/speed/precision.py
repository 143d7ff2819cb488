"""Training throughput in float32 against ``--bf16`` (autocast) on this machine, and the agreement of the losses.

    python benchmarks/speed/precision.py --glue-dir ../shared/glue --teacher runs/teacher [--steps 20] [--repeats 2]

Each (method, precision) runs ``distill`` on MRPC (3-layer student of the packaged MiniLM, batch 32, max length 128)
for ``--steps`` optimizer steps, alternating precisions ``--repeats`` times; prints one line per run and writes
``benchmarks/speed/precision.json``. Long measurements belong here, not in the tests.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--glue-dir", required=True)
    parser.add_argument("--teacher", required=True, help="a fine-tuned MRPC teacher folder")
    parser.add_argument("--methods", default="vkd,fsdil")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", default=str(Path(__file__).with_name("precision.json")))
    args = parser.parse_args()

    from fsdkit import distill

    rows = []
    work = Path(tempfile.mkdtemp(prefix="fsdkit-precision-"))
    try:
        for method in args.methods.split(","):
            for _ in range(args.repeats):
                for bf16 in (False, True):
                    out = work / f"{method}-{bf16}"
                    shutil.rmtree(out, ignore_errors=True)
                    record = distill(
                        task="mrpc",
                        data_dir=args.glue_dir,
                        teacher=args.teacher,
                        method=method,
                        output_dir=str(out),
                        max_steps=args.steps,
                        batch_size=32,
                        max_length=128,
                        bf16=bf16,
                        progress=False,
                        relation_every=0,
                        max_eval_samples=32,
                        logging_steps=args.steps,
                    )
                    row = {
                        "method": method,
                        "precision": "bf16" if bf16 else "fp32",
                        "train_samples_per_second": round(record["train_samples_per_second"], 1),
                        "final_loss": record["final_train_loss"],
                    }
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    payload = {"date": time.strftime("%Y-%m-%d %H:%M"), "steps": args.steps, "rows": rows}
    Path(args.output).write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
