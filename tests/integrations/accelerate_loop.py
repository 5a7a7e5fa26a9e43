"""An Accelerate training loop over a prebake Loader, run on 2 CPU processes by test_accelerate.py (torchrun).

Each process writes the items of every batch it trained on to ``<out>/<phase>-rank<R>.json``. With
``--save-at K`` it calls ``accelerator.save_state`` after K steps of epoch 1 and goes on to the end;
``--resume`` starts a new loop from that state and trains the rest.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from accelerate import Accelerator

import prebake
from prebake.integrations.accelerate import prepare_loader


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("cache")
    p.add_argument("out")
    p.add_argument("--save-at", type=int, default=2)
    p.add_argument("--resume", action="store_true")
    args = p.parse_args()
    accelerator = Accelerator(cpu=True)
    loader = prepare_loader(accelerator, prebake.open(args.cache), 3, seed=4)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model, optimizer = accelerator.prepare(model, optimizer)
    state_dir = Path(args.out) / "state"
    seen: list[list[int]] = []
    if args.resume:
        accelerator.load_state(str(state_dir))
        epochs = [1]
    else:
        epochs = [0, 1]
    for epoch in epochs:
        for step, batch in enumerate(loader):
            seen.append([epoch, *batch["i"].tolist()])
            loss = torch.nn.functional.mse_loss(model(batch["x"]).squeeze(1), batch["y"])
            accelerator.backward(loss)
            optimizer.step()
            optimizer.zero_grad()
            if not args.resume and epoch == 1 and step + 1 == args.save_at:
                accelerator.save_state(str(state_dir))
                seen.append(["saved"])
    weights = [p.detach().flatten().tolist() for p in model.parameters()]
    phase = "resumed" if args.resume else "full"
    record = {"seen": seen, "weights": weights, "world_size": accelerator.num_processes}
    Path(args.out, f"{phase}-rank{accelerator.process_index}.json").write_text(json.dumps(record))
    del model, optimizer  # the DDP wrapper holds the process group: release it before the group is destroyed
    accelerator.free_memory()
    accelerator.wait_for_everyone()
    accelerator.end_training()  # destroys the process group: gloo threads left to exit teardown can abort it


if __name__ == "__main__":
    main()
