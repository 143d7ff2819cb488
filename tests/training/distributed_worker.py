"""Worker of ``test_distributed.py``: a few VKD / FSDI steps of the tiny no-dropout pair of ``test_trainer``,
launched by ``accelerate launch --num_processes N`` (or plain ``python`` for one process).

Usage: ``distributed_worker.py OUT METHOD PER_DEVICE_BATCH``. The main process writes ``OUT/student.safetensors``
(the trained student's weights) and ``OUT/log_history.json``; every process writes ``OUT/rank<i>.json`` with the
number of optimizer steps it took and the sample indices it saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # test_trainer beside it; read_counting in tests/

from safetensors.torch import save_file  # noqa: E402
from test_trainer import make_trainer, tiny_parts  # noqa: E402

from fsdkit.models import resolve_model_path  # noqa: E402


def main(out: str, method: str, batch_size: int) -> None:
    out = Path(out)
    parts = tiny_parts(resolve_model_path("minilm"))
    parts["data"] = parts["data"].add_column("idx", list(range(len(parts["data"]))))
    trainer = make_trainer(
        parts, out / "run", method=method, batch_size=batch_size, accumulation=1, max_steps=3, save_steps=1000
    )
    seen = []
    original = type(trainer).compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.extend(inputs["idx"].tolist())
        return original(self, model, inputs, *args, **kwargs)

    type(trainer).compute_loss = spy
    trainer.train()
    rank = trainer.args.process_index
    (out / f"rank{rank}.json").write_text(
        json.dumps({"steps": trainer.state.global_step, "seen": seen, "world_size": trainer.args.world_size})
    )
    if trainer.is_world_process_zero():
        state = {k: v.detach().contiguous() for k, v in trainer.model.student.state_dict().items()}
        save_file(state, out / "student.safetensors")
        (out / "log_history.json").write_text(json.dumps(trainer.state.log_history))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
